#include "log/lead_index.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/coding.h"
#include "common/crypto.h"
#include "model/generated_activities.h"
#include "storage/keys.h"
#include "storage/schema.h"

namespace fairway::log {

namespace {

uint64_t OrderedTime(int64_t ms) { return static_cast<uint64_t>(ms) ^ (1ULL << 63); }

std::string LeadPrefix(const TenantId& tenant, std::string_view lead) {
  std::string k = TenantKeyPrefix(tenant);
  PutFixed32BE(&k, static_cast<uint32_t>(lead.size()));
  k.append(lead);
  return k;
}

std::string Position(uint32_t partition, uint64_t offset) {
  std::string pos;
  PutFixed32BE(&pos, partition);
  PutFixed64BE(&pos, offset);
  return pos;
}

std::string EncodeCursor(std::string_view key_suffix) {
  std::string b64 = Base64Encode(key_suffix);
  for (char& c : b64) c = c == '+' ? '-' : c == '/' ? '_' : c;
  while (!b64.empty() && b64.back() == '=') b64.pop_back();
  return b64;
}

std::optional<std::string> DecodeCursor(std::string_view cursor) {
  std::string s(cursor);
  for (char& c : s) c = c == '-' ? '+' : c == '_' ? '/' : c;
  auto raw = Base64Decode(s);
  if (!raw || raw->size() != 20) return std::nullopt;
  return raw;
}

}  // namespace

std::string TenantKeyPrefix(const TenantId& tenant) { return tenant.str() + '\0'; }
std::string TenantKeyEnd(const TenantId& tenant) { return tenant.str() + '\x01'; }

std::string DedupKey(const TenantId& tenant, std::string_view message_id) {
  std::string k = TenantKeyPrefix(tenant);
  k.append(message_id);
  return k;
}

IndexRow DedupRow(std::string key, uint32_t partition, uint64_t offset, int64_t expiry_ms) {
  return {std::move(key), storage::EncodeTtlValue(expiry_ms, Position(partition, offset))};
}

void AddLeadIndexRows(const TenantId& tenant, const model::Activity& a, uint32_t partition,
                      uint64_t offset, int64_t expiry_ms, std::vector<IndexRow>* out) {
  // The sessions processor's internal timer says nothing about the lead: not in its timeline.
  if (a.type == model::ActivityType::kFairway && a.event == model::SessionTimeout::kEvent) return;
  std::string value = storage::EncodeTtlValue(expiry_ms, "");
  value.push_back(static_cast<char>(a.type));
  value.append(a.event);
  const std::string pos = Position(partition, offset);
  for (const std::string* lead : {&a.user_id, &a.anonymous_id}) {
    if (lead->empty() || (lead == &a.anonymous_id && a.anonymous_id == a.user_id)) continue;
    IndexRow row{LeadPrefix(tenant, *lead), value};
    PutFixed64BE(&row.key, OrderedTime(a.timestamp_ms));
    row.key.append(pos);
    out->push_back(std::move(row));
  }
}

Result<ActivityPage> QueryLeadIndex(storage::Store* store, const ActivityQuery& q,
                                    const RecordFetcher& fetch, storage::ColumnFamily cf) {
  if (q.lead.empty()) return InvalidArgument("parameter 'lead' is required");
  std::optional<std::string> cursor;
  if (!q.cursor.empty()) {
    cursor = DecodeCursor(q.cursor);
    if (!cursor) return InvalidArgument("parameter 'cursor' is not a valid cursor");
  }
  // One iterator per identity, merged by key suffix (event time, partition, offset): the suffix
  // names one record whichever identity indexed it, so equal suffixes are one activity.
  struct Source {
    std::string prefix;
    std::unique_ptr<storage::Iterator> it;
    std::string_view suffix() const { return it->key().substr(prefix.size()); }
  };
  std::vector<Source> sources;
  std::vector<std::string_view> leads{q.lead.view()};
  for (const auto& l : q.also) {
    if (!l.empty() && std::find(leads.begin(), leads.end(), l.view()) == leads.end()) {
      leads.push_back(l.view());
    }
  }
  for (std::string_view lead : leads) {
    Source src;
    src.prefix = LeadPrefix(q.tenant, lead);
    std::string lower = src.prefix, upper = src.prefix;
    PutFixed64BE(&lower, OrderedTime(q.since_ms));
    if (q.until_ms == INT64_MAX) {
      upper = storage::PrefixEnd(src.prefix);
    } else {
      PutFixed64BE(&upper, OrderedTime(q.until_ms + 1));
    }
    src.it = store->NewIterator(cf, lower, upper);
    const std::string cursor_key = cursor ? src.prefix + *cursor : std::string();
    if (q.newest_first) {
      if (cursor_key.empty()) {
        src.it->SeekToLast();
      } else {
        src.it->SeekForPrev(cursor_key);
        if (src.it->Valid() && src.it->key() == cursor_key) src.it->Prev();
      }
    } else {
      if (cursor_key.empty()) {
        src.it->SeekToFirst();
      } else {
        src.it->Seek(cursor_key);
        if (src.it->Valid() && src.it->key() == cursor_key) src.it->Next();
      }
    }
    sources.push_back(std::move(src));
  }
  auto step = [&](Source& src) { q.newest_first ? src.it->Prev() : src.it->Next(); };
  const size_t limit = std::clamp<size_t>(q.limit, 1, 1000);
  ActivityPage page;
  std::string last_suffix;
  while (true) {
    // The next record in the page's order among the sources.
    Source* next = nullptr;
    for (auto& src : sources) {
      if (!src.it->Valid()) continue;
      if (src.it->key().size() != src.prefix.size() + 20) {
        return Internal("lead index: corrupt entry");
      }
      if (!next ||
          (q.newest_first ? src.suffix() > next->suffix() : src.suffix() < next->suffix())) {
        next = &src;
      }
    }
    if (!next) break;
    const std::string suffix(next->suffix());
    const std::string value(next->it->value());
    // The same record under other identities is skipped with it.
    for (auto& src : sources) {
      if (src.it->Valid() && src.suffix() == suffix) step(src);
    }
    if (value.size() < 9) return Internal("lead index: corrupt entry");
    std::string_view v = value;
    auto type = static_cast<model::ActivityType>(v[8]);
    if (q.type && type != *q.type) continue;
    if (!q.event.empty() && v.substr(9) != q.event) continue;
    if (page.entries.size() == limit) {
      page.next_cursor = EncodeCursor(last_suffix);
      break;
    }
    uint32_t partition = DecodeFixed32BE(suffix.data() + 8);
    uint64_t offset = DecodeFixed64BE(suffix.data() + 12);
    // A record removed by retention whose index entry has not expired yet is skipped.
    FAIRWAY_ASSIGN_OR_RETURN(std::optional<model::Activity> a, fetch(partition, offset));
    if (!a) continue;
    page.entries.push_back({PartitionId(partition), Offset(offset), std::move(*a)});
    last_suffix = suffix;
  }
  for (auto& src : sources) FAIRWAY_RETURN_IF_ERROR(src.it->status());
  return page;
}

std::string LayoutsKey(const TenantId& tenant) { return TenantKeyPrefix(tenant) + "layouts"; }

std::string EncodeLayouts(const std::vector<model::PartitionLayout>& layouts) {
  std::string out;
  PutFixed32BE(&out, static_cast<uint32_t>(layouts.size()));
  for (const auto& l : layouts) {
    PutFixed32BE(&out, l.first);
    PutFixed32BE(&out, l.count);
    PutFixed32BE(&out, static_cast<uint32_t>(l.ends.size()));
    for (uint64_t e : l.ends) PutFixed64BE(&out, e);
  }
  return out;
}

Result<std::vector<model::PartitionLayout>> DecodeLayouts(std::string_view v) {
  auto corrupt = [] { return Internal("the log's record of partition layouts is corrupt"); };
  auto take32 = [&](uint32_t* out) {
    if (v.size() < 4) return false;
    *out = DecodeFixed32BE(v.data());
    v.remove_prefix(4);
    return true;
  };
  uint32_t n = 0;
  if (!take32(&n) || n > model::kMaxLayouts + 1) return corrupt();
  std::vector<model::PartitionLayout> out(n);
  uint32_t next = 0;
  for (auto& l : out) {
    uint32_t ends = 0;
    if (!take32(&l.first) || !take32(&l.count) || !take32(&ends) || l.first != next ||
        l.count == 0 || (ends != 0 && ends != l.count) || v.size() < 8ull * ends) {
      return corrupt();
    }
    for (uint32_t i = 0; i < ends; ++i) {
      l.ends.push_back(DecodeFixed64BE(v.data()));
      v.remove_prefix(8);
    }
    next = l.first + l.count;
  }
  if (!v.empty()) return corrupt();
  return out;
}

Result<std::vector<model::PartitionLayout>> NextLayouts(
    std::vector<model::PartitionLayout> recorded, const model::PartitionLayout& current,
    uint32_t count, const std::vector<uint64_t>& ends, bool* repeated) {
  *repeated = false;
  const model::PartitionLayout next{current.first + current.count, count, {}};
  if (recorded.size() >= 2 && recorded.back() == next &&
      recorded[recorded.size() - 2].first == current.first &&
      recorded[recorded.size() - 2].count == current.count) {
    *repeated = true;
    return recorded;
  }
  if (recorded.empty() && current.first == 0) recorded.push_back({0, current.count, {}});
  if (recorded.empty() || recorded.back().first != current.first ||
      recorded.back().count != current.count || !recorded.back().ends.empty()) {
    return FailedPrecondition(
        fmt::format("the layout of {} partitions from partition {} is not the log's current layout",
                    current.count, current.first));
  }
  recorded.back().ends = ends;
  recorded.push_back(next);
  return recorded;
}

Result<std::vector<model::PartitionLayout>> MergeLayouts(
    std::vector<model::PartitionLayout> recorded,
    const std::vector<model::PartitionLayout>& incoming) {
  for (size_t i = 0; i < incoming.size(); ++i) {
    const model::PartitionLayout& in = incoming[i];
    if (i >= recorded.size()) {
      recorded.push_back(in);
      continue;
    }
    model::PartitionLayout& have = recorded[i];
    if (have.first != in.first || have.count != in.count ||
        (!have.ends.empty() && !in.ends.empty() && have.ends != in.ends)) {
      return FailedPrecondition(
          fmt::format("layout {} differs: {} partitions from partition {} here, {} from {} there",
                      i, have.count, have.first, in.count, in.first));
    }
    if (have.ends.empty()) have.ends = in.ends;
  }
  return recorded;
}

}  // namespace fairway::log
