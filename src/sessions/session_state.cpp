#include "sessions/session_state.h"

#include <fmt/format.h>

#include "common/coding.h"
#include "common/hash.h"

namespace fairway::sessions {

namespace {
constexpr uint8_t kSessionVersion = 1;

Status Corrupt() { return Internal("sessions: corrupt session row"); }
}  // namespace

std::string EncodeSession(const Session& s) {
  std::string out;
  out.push_back(static_cast<char>(kSessionVersion));
  out.push_back(s.kind);
  out.push_back(s.ended ? 1 : 0);
  PutLengthPrefixed(&out, s.id);
  PutVarintSigned64(&out, s.start_ms);
  PutVarintSigned64(&out, s.end_ms);
  PutVarint64(&out, s.events);
  PutVarint64(&out, s.pages);
  PutLengthPrefixed(&out, s.landing_page);
  PutLengthPrefixed(&out, s.source);
  PutLengthPrefixed(&out, s.campaign);
  PutVarintSigned64(&out, s.due_ms);
  return out;
}

Result<Session> DecodeSession(std::string_view in) {
  Decoder d(in);
  Session s;
  uint8_t version = 0, kind = 0, ended = 0;
  uint64_t events = 0, pages = 0;
  std::string_view id, landing, source, campaign;
  if (!d.GetByte(&version) || version != kSessionVersion || !d.GetByte(&kind) ||
      (kind != 'u' && kind != 'a') || !d.GetByte(&ended) || ended > 1 ||
      !d.GetLengthPrefixed(&id) || !d.GetVarintSigned64(&s.start_ms) ||
      !d.GetVarintSigned64(&s.end_ms) || !d.GetVarint64(&events) || !d.GetVarint64(&pages) ||
      !d.GetLengthPrefixed(&landing) || !d.GetLengthPrefixed(&source) ||
      !d.GetLengthPrefixed(&campaign) || !d.GetVarintSigned64(&s.due_ms) || !d.empty() ||
      events > UINT32_MAX || pages > UINT32_MAX) {
    return Corrupt();
  }
  s.kind = static_cast<char>(kind);
  s.ended = ended == 1;
  s.id.assign(id);
  s.events = static_cast<uint32_t>(events);
  s.pages = static_cast<uint32_t>(pages);
  s.landing_page.assign(landing);
  s.source.assign(source);
  s.campaign.assign(campaign);
  return s;
}

std::string MakeSessionId(std::string_view lead, std::string_view message_id) {
  std::string seed(lead);
  seed.push_back('\0');
  seed.append(message_id);
  return fmt::format("s_{:016x}", Hash64(seed));
}

uint64_t OrderedTime(int64_t ms) { return static_cast<uint64_t>(ms) ^ (uint64_t{1} << 63); }
int64_t FromOrderedTime(uint64_t v) { return static_cast<int64_t>(v ^ (uint64_t{1} << 63)); }

std::string HeadKey(std::string_view lead) {
  std::string k = "h/";
  k.append(lead);
  return k;
}

std::string PastPrefix(std::string_view lead) {
  std::string k = "s/";
  k.append(lead);
  k.push_back('\0');
  return k;
}

std::string PastKey(std::string_view lead, int64_t start_ms) {
  std::string k = PastPrefix(lead);
  PutFixed64BE(&k, OrderedTime(start_ms));
  return k;
}

std::string DueKey(int64_t due_ms, char kind, std::string_view lead) {
  std::string k(kDuePrefix);
  PutFixed64BE(&k, OrderedTime(due_ms));
  k.push_back(kind);
  k.append(lead);
  return k;
}

Result<DueRow> DecodeDueKey(std::string_view key) {
  if (!key.starts_with(kDuePrefix) || key.size() < kDuePrefix.size() + 9) {
    return Internal("sessions: corrupt due row");
  }
  key.remove_prefix(kDuePrefix.size());
  DueRow r;
  r.due_ms = FromOrderedTime(DecodeFixed64BE(key.data()));
  r.kind = key[8];
  if (r.kind != 'u' && r.kind != 'a') return Internal("sessions: corrupt due row");
  r.lead.assign(key.substr(9));
  return r;
}

}  // namespace fairway::sessions
