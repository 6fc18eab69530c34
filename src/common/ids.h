#pragma once
// Strong identifier types. A TenantId is not a LeadId is not a MessageId, even though all are
// strings underneath; offsets and partitions are distinct integers.

#include <compare>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace fairway {

// A string id that cannot be mixed up with another kind of id. `Tag` only distinguishes types.
template <typename Tag>
class StringId {
 public:
  StringId() = default;
  explicit StringId(std::string v) : v_(std::move(v)) {}
  explicit StringId(std::string_view v) : v_(v) {}
  explicit StringId(const char* v) : v_(v) {}

  const std::string& str() const { return v_; }
  std::string_view view() const { return v_; }
  bool empty() const { return v_.empty(); }

  auto operator<=>(const StringId&) const = default;
  bool operator==(const StringId&) const = default;

 private:
  std::string v_;
};

// A 64-bit integer id that cannot be mixed up with another kind of integer.
template <typename Tag, typename Int = uint64_t>
class IntId {
 public:
  constexpr IntId() = default;
  constexpr explicit IntId(Int v) : v_(v) {}
  constexpr Int value() const { return v_; }
  constexpr auto operator<=>(const IntId&) const = default;
  constexpr bool operator==(const IntId&) const = default;

 private:
  Int v_ = 0;
};

struct TenantIdTag {};
struct LeadIdTag {};
struct MessageIdTag {};
struct OffsetTag {};
struct PartitionTag {};

using TenantId = StringId<TenantIdTag>;
using LeadId = StringId<LeadIdTag>;
using MessageId = StringId<MessageIdTag>;
// Position of a record inside one tenant partition; contiguous from 0.
using Offset = IntId<OffsetTag, uint64_t>;
// A partition of a tenant's log; records of one lead always land in the same partition.
using PartitionId = IntId<PartitionTag, uint32_t>;

// Returns true when `id` is a valid tenant id: [a-z0-9][a-z0-9_-]{0,62}.
bool IsValidTenantId(std::string_view id);

}  // namespace fairway

template <typename Tag>
struct std::hash<fairway::StringId<Tag>> {
  size_t operator()(const fairway::StringId<Tag>& id) const noexcept {
    return std::hash<std::string>()(id.str());
  }
};
template <typename Tag, typename Int>
struct std::hash<fairway::IntId<Tag, Int>> {
  size_t operator()(const fairway::IntId<Tag, Int>& id) const noexcept {
    return std::hash<Int>()(id.value());
  }
};
