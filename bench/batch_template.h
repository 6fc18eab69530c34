#pragma once
// Pre-built request payloads. Every payload the load generator sends is built once per
// connection with fixed-width holes ("slots") for the fields that must differ from one event
// to the next (tenant, user id, message id, timestamp); before each send only those holes are
// overwritten, so producing a request costs a few small copies and no allocation.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fairway::bench {

// The per-event fields that are patched into a template before each send.
enum class Field : uint8_t { kTenant, kUserId, kMessageId, kTimestamp };

inline constexpr size_t kUserIdWidth = 7;      // "u" + 6 decimal digits
inline constexpr size_t kMessageIdWidth = 26;  // run(8 hex) '-' stream(4 hex) '-' sequence(12 hex)
inline constexpr size_t kTimestampWidth = 24;  // "2024-01-02T03:04:05.678Z"
inline constexpr uint32_t kMaxUsers = 1'000'000;

// Width of `field` in a template whose tenant names are `tenant_width` characters long.
size_t FieldWidth(Field field, size_t tenant_width);

// Source of the unique values of successive events: user ids drawn uniformly from a tenant's
// user population, and message ids made of a random run id, a stream number (one per
// connection) and a sequence, so they never repeat within a run nor, in practice, across runs.
class FieldSource {
 public:
  FieldSource(uint32_t run_id, uint16_t stream, uint32_t users, uint64_t seed);

  // Write exactly kUserIdWidth / kMessageIdWidth characters to `out`.
  void NextUserId(char* out);
  void NextMessageId(char* out);

 private:
  uint64_t NextRandom();

  char message_prefix_[14];  // "rrrrrrrr-ssss-"
  uint64_t sequence_ = 0;
  uint64_t rng_state_;
  uint32_t users_;
};

// A payload with fixed-width slots. Build it with Append/AppendSlot, then call Fill before each
// send; its size never changes after building.
class BatchTemplate {
 public:
  explicit BatchTemplate(size_t tenant_width) : tenant_width_(tenant_width) {}

  // While on, appended literals are escaped for PostgreSQL COPY text format.
  void SetCopyEscaping(bool on) { copy_escaping_ = on; }

  void Append(std::string_view literal);
  // Appends a placeholder for `field` of event number `event` (events must be appended in order;
  // an event may have several slots, even several for the same field).
  void AppendSlot(Field field, uint32_t event);

  // Overwrites every slot: `tenant` (tenant_width characters) and `timestamp` (kTimestampWidth)
  // everywhere, and one fresh user id and message id per event from `source`.
  void Fill(std::string_view tenant, std::string_view timestamp, FieldSource& source);

  std::string_view bytes() const { return bytes_; }
  size_t tenant_width() const { return tenant_width_; }

 private:
  // Where a field is patched in.
  struct Slot {
    uint32_t offset;
    uint32_t event;
    Field field;
  };

  std::string bytes_;
  std::vector<Slot> slots_;
  size_t tenant_width_;
  bool copy_escaping_ = false;
};

// The event variant used for event number `event` of a batch on connection `stream`: differs
// from one event to the next and between connections.
uint32_t EventVariant(uint16_t stream, uint32_t event);

// One tracked event ("Page Viewed" with about 200 bytes of realistic properties) as JSON text
// interleaved with slots for its user id, message id and timestamp. `variant` picks among a few
// pages, referrers and plans so that the events of a batch are not all identical.
class EventShape {
 public:
  explicit EventShape(uint32_t variant);

  // Length of the event's JSON once the slots are filled.
  size_t json_size() const;
  // Appends the event's JSON to `out` as slots of event number `event`.
  void AppendTo(BatchTemplate* out, uint32_t event) const;

 private:
  // Literal text, or a slot when is_slot is set.
  struct Piece {
    std::string literal;
    Field field = Field::kTenant;
    bool is_slot = false;
  };

  std::vector<Piece> pieces_;
};

// Writes `value` as exactly `width` decimal digits (zero-padded, high digits dropped).
void WriteFixedDecimal(char* out, size_t width, uint64_t value);
// Writes `value` as exactly `width` lowercase hex digits (zero-padded, high digits dropped).
void WriteFixedHex(char* out, size_t width, uint64_t value);

}  // namespace fairway::bench
