// wait: pauses the run for a duration, until a time, or until the next HH:MM in a time zone.
// The processor stores a timer; the timer service wakes the run (campaign_wait_elapsed).

#include <date/tz.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cctype>
#include <chrono>

#include "campaigns/actions/action_kinds.h"
#include "common/json_writer.h"
#include "common/time_format.h"

namespace fairway::campaigns::actions {

namespace {

constexpr int64_t kDayMs = 86'400'000;

// "90s", "15m", "2h", "3d", "1w", or combinations ("1d12h").
std::optional<int64_t> ParseDuration(std::string_view s) {
  int64_t total = 0;
  size_t i = 0;
  if (s.empty()) return std::nullopt;
  while (i < s.size()) {
    size_t start = i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    if (start == i || i - start > 9 || i >= s.size()) return std::nullopt;
    int64_t n = std::stoll(std::string(s.substr(start, i - start)));
    int64_t unit = 0;
    switch (s[i]) {
      case 's':
        unit = 1'000;
        break;
      case 'm':
        unit = 60'000;
        break;
      case 'h':
        unit = 3'600'000;
        break;
      case 'd':
        unit = 86'400'000;
        break;
      case 'w':
        unit = 7 * 86'400'000LL;
        break;
      default:
        return std::nullopt;
    }
    total += n * unit;
    ++i;
  }
  return total;
}

// A duration in the largest unit that divides it ("2d", "90s"), as ParseDuration reads it.
std::string FormatDuration(int64_t ms) {
  static constexpr std::pair<int64_t, char> kUnits[] = {
      {7 * 86'400'000LL, 'w'}, {86'400'000, 'd'}, {3'600'000, 'h'}, {60'000, 'm'}, {1'000, 's'}};
  for (auto [unit, suffix] : kUnits) {
    if (ms % unit == 0) return fmt::format("{}{}", ms / unit, suffix);
  }
  return fmt::format("{}s", ms / 1000);  // not reached: parsed durations are whole seconds
}

class WaitAction final : public Action {
 public:
  // Exactly one of duration, until, time of day.
  enum class Until : uint8_t { kDuration, kTime, kTimeOfDay };

  Until until = Until::kDuration;
  int64_t duration_ms = 0;
  int64_t until_ms = 0;
  int32_t minute_of_day = -1;  // at the next hh:mm ...
  std::string timezone;        // ... in "lead" (the lead's timezone trait), "tenant", or IANA

  std::string_view kind() const override { return "wait"; }

  void Render(JsonWriter& w) const override {
    w.BeginObject().Key("action").String(kind());
    switch (until) {
      case Until::kDuration:
        w.Key("duration").String(FormatDuration(duration_ms));
        break;
      case Until::kTime:
        w.Key("until").String(FormatIso8601Millis(until_ms));
        break;
      case Until::kTimeOfDay:
        w.Key("at").String(fmt::format("{:02}:{:02}", minute_of_day / 60, minute_of_day % 60));
        w.Key("timezone").String(timezone);
        break;
    }
    w.EndObject();
  }

  // Never runs: the processor pauses the run at a wait (pauses()).
  Result<Outcome> Execute(ActionContext&) const override { return Outcome::kExecuted; }

  bool pauses() const override { return true; }

  int64_t ResumeAt(ActionContext& ctx) const override {
    const int64_t now = ctx.now_ms();
    if (until == Until::kDuration) return now + duration_ms;
    if (until == Until::kTime) return until_ms;
    // At the next HH:MM in a time zone.
    std::string tz = timezone;
    if (tz == "lead") {
      FieldValue v = ctx.LeadField("timezone");
      tz = v.kind == FieldValue::Kind::kString ? v.text : "tenant";
    }
    if (tz == "tenant") tz = ctx.TenantTimezone().value_or("");
    if (tz.empty()) tz = "UTC";
    try {
      const date::time_zone* zone = nullptr;
      try {
        zone = date::locate_zone(tz);
      } catch (const std::exception&) {
        zone = date::locate_zone(ctx.TenantTimezone().value_or("UTC"));
      }
      using namespace std::chrono;
      auto now_tp = date::sys_time<milliseconds>(milliseconds(now));
      auto local = date::floor<minutes>(zone->to_local(now_tp));
      auto candidate = date::floor<date::days>(local) + minutes(minute_of_day);
      // The first occurrence of HH:MM after now. A local time that occurs twice (the repeated
      // hour when clocks go back) may have its first occurrence past and its second ahead; one
      // that does not exist (clocks go forward) maps to the moment of the transition.
      for (int day = 0; day < 3; ++day, candidate += date::days(1)) {
        for (auto choose : {date::choose::earliest, date::choose::latest}) {
          auto sys = zone->to_sys(candidate, choose);
          int64_t ms = duration_cast<milliseconds>(sys.time_since_epoch()).count();
          if (ms > now) return ms;
        }
      }
      return now + kDayMs;
    } catch (const std::exception& e) {
      // A broken zone: an hour later.
      spdlog::warn("campaigns: wait time of day in '{}': {}", tz, e.what());
      return now + 3'600'000;
    }
  }
};

}  // namespace

std::shared_ptr<const Action> ParseWait(DefinitionParser& p, const json::object& o,
                                        const std::string& path) {
  ActionInput in{p, o, path};
  if (!in.Only({"action", "duration", "until", "at", "timezone"})) return nullptr;
  int given = o.contains("duration") + o.contains("until") + o.contains("at");
  if (given != 1) {
    p.Fail(path, "a wait needs exactly one of duration, until, at");
    return nullptr;
  }
  auto a = std::make_shared<WaitAction>();
  if (o.contains("duration")) {
    std::string d = in.Str("duration", true, 32);
    auto ms = ParseDuration(d);
    if (!ms || *ms <= 0 || *ms > 3650LL * kDayMs) {
      p.Fail(in.At("duration"), "must be like 90s, 15m, 2h, 3d, 1w or 1d12h (at most 10 years)");
      return nullptr;
    }
    a->duration_ms = *ms;
    a->until = WaitAction::Until::kDuration;
  } else if (o.contains("until")) {
    auto ms = ParseIso8601Millis(in.Str("until", true, 64));
    if (!ms) {
      p.Fail(in.At("until"), "must be an ISO 8601 date or time");
      return nullptr;
    }
    a->until_ms = *ms;
    a->until = WaitAction::Until::kTime;
  } else {
    std::string at = in.Str("at", true, 8);
    int h = -1, m = -1;
    if (at.size() == 5 && at[2] == ':' && std::isdigit(at[0]) && std::isdigit(at[1]) &&
        std::isdigit(at[3]) && std::isdigit(at[4])) {
      h = (at[0] - '0') * 10 + (at[1] - '0');
      m = (at[3] - '0') * 10 + (at[4] - '0');
    }
    if (h < 0 || h > 23 || m < 0 || m > 59) {
      p.Fail(in.At("at"), "must be a time of day, HH:MM");
      return nullptr;
    }
    a->minute_of_day = h * 60 + m;
    a->until = WaitAction::Until::kTimeOfDay;
    a->timezone = in.Str("timezone", false, 64);
    if (a->timezone.empty()) a->timezone = "lead";
    if (a->timezone != "lead" && a->timezone != "tenant") {
      bool known = false;
      try {
        known = date::locate_zone(a->timezone) != nullptr;
      } catch (const std::exception&) {
        known = false;
      }
      if (!known) {
        p.Fail(in.At("timezone"), "must be lead, tenant or an IANA time zone");
        return nullptr;
      }
    }
  }
  return a;
}

}  // namespace fairway::campaigns::actions
