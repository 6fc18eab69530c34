#include "campaigns/campaign_state.h"

#include <fmt/format.h>

#include "common/coding.h"
#include "common/hash.h"

namespace fairway::campaigns {

namespace {
constexpr uint8_t kRunVersion = 1;
constexpr uint8_t kHistoryVersion = 1;
constexpr uint8_t kMailVersion = 1;
constexpr uint8_t kTimerVersion = 1;
constexpr uint8_t kDeferredVersion = 1;

Status Corrupt(std::string_view what) {
  return Internal(fmt::format("campaign state: corrupt {}", what));
}

std::string LeadScoped(char kind, std::string_view lead, std::string_view campaign) {
  std::string k;
  k.reserve(lead.size() + campaign.size() + 3);
  k.push_back(kind);
  k.push_back('/');
  k.append(lead);
  k.push_back('\0');
  k.append(campaign);
  return k;
}
}  // namespace

std::string EncodeRunState(const RunState& r) {
  std::string out;
  out.push_back(static_cast<char>(kRunVersion));
  PutLengthPrefixed(&out, r.run_id);
  PutVarintSigned64(&out, r.campaign_created_ms);
  PutVarint64(&out, r.step);
  PutVarintSigned64(&out, r.wait_due_ms);
  PutVarint64(&out, r.depth);
  PutVarintSigned64(&out, r.started_ms);
  PutLengthPrefixed(&out, r.trigger_message_id);
  PutLengthPrefixed(&out, r.trigger_event);
  out.push_back(static_cast<char>(r.trigger_type));
  PutVarintSigned64(&out, r.trigger_time_ms);
  PutLengthPrefixed(&out, r.trigger_fields_json);
  PutVarint64(&out, r.tokens.size());
  for (const auto& [k, v] : r.tokens) {
    PutLengthPrefixed(&out, k);
    PutLengthPrefixed(&out, v);
  }
  PutLengthPrefixed(&out, r.user_id);
  PutLengthPrefixed(&out, r.anonymous_id);
  return out;
}

Result<RunState> DecodeRunState(std::string_view in) {
  Decoder d(in);
  RunState r;
  uint8_t version = 0;
  uint64_t step = 0, depth = 0, ntokens = 0;
  std::string_view run_id, mid, event, fields, uid, aid;
  if (!d.GetByte(&version) || version != kRunVersion || !d.GetLengthPrefixed(&run_id) ||
      !d.GetVarintSigned64(&r.campaign_created_ms) || !d.GetVarint64(&step) ||
      !d.GetVarintSigned64(&r.wait_due_ms) || !d.GetVarint64(&depth) ||
      !d.GetVarintSigned64(&r.started_ms) || !d.GetLengthPrefixed(&mid) ||
      !d.GetLengthPrefixed(&event) || !d.GetByte(&r.trigger_type) ||
      !d.GetVarintSigned64(&r.trigger_time_ms) || !d.GetLengthPrefixed(&fields) ||
      !d.GetVarint64(&ntokens) || ntokens > 10'000) {
    return Corrupt("run");
  }
  for (uint64_t i = 0; i < ntokens; ++i) {
    std::string_view k, v;
    if (!d.GetLengthPrefixed(&k) || !d.GetLengthPrefixed(&v)) return Corrupt("run");
    r.tokens.emplace(k, v);
  }
  if (!d.GetLengthPrefixed(&uid) || !d.GetLengthPrefixed(&aid)) return Corrupt("run");
  r.run_id = std::string(run_id);
  r.step = static_cast<uint32_t>(step);
  r.depth = static_cast<uint32_t>(depth);
  r.trigger_message_id = std::string(mid);
  r.trigger_event = std::string(event);
  r.trigger_fields_json = std::string(fields);
  r.user_id = std::string(uid);
  r.anonymous_id = std::string(aid);
  return r;
}

std::string EncodeHistory(const History& h) {
  std::string out;
  out.push_back(static_cast<char>(kHistoryVersion));
  PutVarint64(&out, h.runs);
  PutVarintSigned64(&out, h.last_start_event_ms);
  PutLengthPrefixed(&out, h.last_run_id);
  PutVarintSigned64(&out, h.campaign_created_ms);
  return out;
}

Result<History> DecodeHistory(std::string_view in) {
  Decoder d(in);
  History h;
  uint8_t version = 0;
  std::string_view last_run;
  if (!d.GetByte(&version) || version != kHistoryVersion || !d.GetVarint64(&h.runs) ||
      !d.GetVarintSigned64(&h.last_start_event_ms) || !d.GetLengthPrefixed(&last_run) ||
      !d.GetVarintSigned64(&h.campaign_created_ms)) {
    return Corrupt("history");
  }
  h.last_run_id = std::string(last_run);
  return h;
}

std::string EncodeMailLog(const std::vector<int64_t>& sends) {
  std::string out;
  out.push_back(static_cast<char>(kMailVersion));
  PutVarint64(&out, sends.size());
  int64_t prev = 0;
  for (int64_t t : sends) {
    PutVarintSigned64(&out, t - prev);
    prev = t;
  }
  return out;
}

Result<std::vector<int64_t>> DecodeMailLog(std::string_view in) {
  Decoder d(in);
  uint8_t version = 0;
  uint64_t n = 0;
  if (!d.GetByte(&version) || version != kMailVersion || !d.GetVarint64(&n) || n > 100'000) {
    return Corrupt("mail log");
  }
  std::vector<int64_t> out;
  int64_t prev = 0;
  for (uint64_t i = 0; i < n; ++i) {
    int64_t delta = 0;
    if (!d.GetVarintSigned64(&delta)) return Corrupt("mail log");
    prev += delta;
    out.push_back(prev);
  }
  return out;
}

std::string RunKey(const LeadId& lead, std::string_view campaign) {
  return LeadScoped('r', lead.view(), campaign);
}
std::string RunPrefix(const LeadId& lead) { return LeadScoped('r', lead.view(), ""); }
std::string HistoryKey(const LeadId& lead, std::string_view campaign) {
  return LeadScoped('h', lead.view(), campaign);
}
std::string HistoryPrefix(const LeadId& lead) { return LeadScoped('h', lead.view(), ""); }
std::string MailKey(const LeadId& lead) {
  std::string k = "m/";
  k.append(lead.view());
  return k;
}

std::string EncodeDeferredMatch(const DeferredMatch& m) {
  std::string out;
  out.push_back(static_cast<char>(kDeferredVersion));
  out.push_back(m.forwarded ? 1 : 0);
  PutLengthPrefixed(&out, m.campaign);
  PutLengthPrefixed(&out, m.forward_to);
  out.append(EncodeRunState(m.trigger));
  return out;
}

Result<DeferredMatch> DecodeDeferredMatch(std::string_view in) {
  Decoder d(in);
  DeferredMatch m;
  uint8_t version = 0, forwarded = 0;
  std::string_view campaign, forward_to;
  if (!d.GetByte(&version) || version != kDeferredVersion || !d.GetByte(&forwarded) ||
      forwarded > 1 || !d.GetLengthPrefixed(&campaign) || !d.GetLengthPrefixed(&forward_to)) {
    return Corrupt("deferred match");
  }
  m.forwarded = forwarded == 1;
  m.campaign.assign(campaign);
  m.forward_to.assign(forward_to);
  FAIRWAY_ASSIGN_OR_RETURN(m.trigger, DecodeRunState(d.rest()));
  return m;
}

std::string DeferredKey(const LeadId& lead, int64_t event_ms, std::string_view campaign,
                        std::string_view message_id) {
  std::string k = DeferredPrefix(lead);
  // Event times before 1970 sort first (the sign bit flipped).
  PutFixed64BE(&k, static_cast<uint64_t>(event_ms) ^ (uint64_t{1} << 63));
  k.append(campaign);
  k.push_back('\0');
  k.append(message_id);
  return k;
}

std::string DeferredPrefix(const LeadId& lead) { return LeadScoped('d', lead.view(), ""); }

std::string TimerTenantPrefix(const TenantId& tenant) {
  std::string k = tenant.str();
  k.push_back('\0');
  return k;
}

std::string TimerTenantEnd(const TenantId& tenant) {
  std::string k = tenant.str();
  k.push_back('\1');
  return k;
}

std::string TimerKey(const TenantId& tenant, int64_t due_ms, const LeadId& lead,
                     std::string_view campaign, std::string_view run_id) {
  std::string k = TimerTenantPrefix(tenant);
  PutFixed64BE(&k, static_cast<uint64_t>(std::max<int64_t>(0, due_ms)));
  PutFixed32BE(&k, static_cast<uint32_t>(lead.view().size()));
  k.append(lead.view());
  k.append(campaign);
  k.push_back('\0');
  k.append(run_id);
  return k;
}

std::string EncodeTimer(const Timer& t) {
  std::string out;
  out.push_back(static_cast<char>(kTimerVersion));
  PutLengthPrefixed(&out, t.campaign);
  PutLengthPrefixed(&out, t.run_id);
  PutVarint64(&out, t.step);
  PutLengthPrefixed(&out, t.user_id);
  PutLengthPrefixed(&out, t.anonymous_id);
  return out;
}

Result<Timer> DecodeTimer(std::string_view key, std::string_view value) {
  Timer t;
  size_t zero = key.find('\0');
  if (zero == std::string_view::npos || key.size() < zero + 1 + 12) return Corrupt("timer key");
  const char* p = key.data() + zero + 1;
  t.due_ms = static_cast<int64_t>(DecodeFixed64BE(p));
  uint32_t len = DecodeFixed32BE(p + 8);
  if (key.size() < zero + 13 + len) return Corrupt("timer key");
  t.lead = LeadId(key.substr(zero + 13, len));
  Decoder d(value);
  uint8_t version = 0;
  uint64_t step = 0;
  std::string_view campaign, run, uid, aid;
  if (!d.GetByte(&version) || version != kTimerVersion || !d.GetLengthPrefixed(&campaign) ||
      !d.GetLengthPrefixed(&run) || !d.GetVarint64(&step) || !d.GetLengthPrefixed(&uid) ||
      !d.GetLengthPrefixed(&aid)) {
    return Corrupt("timer");
  }
  t.campaign = std::string(campaign);
  t.run_id = std::string(run);
  t.step = static_cast<uint32_t>(step);
  t.user_id = std::string(uid);
  t.anonymous_id = std::string(aid);
  return t;
}

std::string StatsPrefix(const TenantId& tenant, std::string_view campaign) {
  std::string k = tenant.str();
  k.push_back('\0');
  k.append(campaign);
  k.push_back('\0');
  return k;
}

std::string StatsKey(const TenantId& tenant, std::string_view campaign, uint32_t day,
                     std::string_view metric) {
  std::string k = StatsPrefix(tenant, campaign);
  PutFixed32BE(&k, day);
  k.push_back('\0');
  k.append(metric);
  return k;
}

std::string MakeRunId(std::string_view campaign, std::string_view trigger_message_id) {
  std::string in(campaign);
  in.push_back('\0');
  in.append(trigger_message_id);
  // 128 bits: run ids name external deliveries (idempotency keys), so they must not collide
  // across the billions of runs of a tenant's lifetime.
  return fmt::format("{:016x}{:016x}", Hash64(in), Hash64("run:" + in));
}

}  // namespace fairway::campaigns
