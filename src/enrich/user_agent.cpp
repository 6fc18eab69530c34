#include "enrich/user_agent.h"

#include <fmt/format.h>
#include <re2/re2.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

namespace fairway::enrich {

namespace {

// One pattern and its replacements ("$1".."$9" stand for the pattern's groups).
struct Pattern {
  std::unique_ptr<RE2> re;
  std::vector<std::optional<std::string>> replacements;
};

constexpr size_t kCacheEntries = 10'000;

// A replacement with its "$N" filled in, or group `group` when there is none; trimmed.
std::string Fill(const std::optional<std::string>& replacement, const std::vector<std::string>& g,
                 size_t group) {
  std::string out;
  if (replacement) {
    const std::string& r = *replacement;
    for (size_t i = 0; i < r.size(); ++i) {
      if (r[i] == '$' && i + 1 < r.size() && r[i + 1] >= '1' && r[i + 1] <= '9') {
        const size_t n = static_cast<size_t>(r[i + 1] - '0');
        if (n <= g.size()) out += g[n - 1];
        ++i;
      } else {
        out += r[i];
      }
    }
  } else if (group >= 1 && group <= g.size()) {
    out = g[group - 1];
  }
  const auto first = out.find_first_not_of(' ');
  if (first == std::string::npos) return {};
  return out.substr(first, out.find_last_not_of(' ') - first + 1);
}

}  // namespace

struct UserAgentParser::Impl {
  std::vector<Pattern> browsers, oses, devices;
  size_t skipped = 0;
  mutable std::mutex mu;
  mutable std::unordered_map<std::string, ParsedUserAgent> cache;  // guarded by mu

  Status LoadList(const YAML::Node& list, const std::vector<std::string>& keys,
                  std::vector<Pattern>* out) {
    if (!list || !list.IsSequence()) return InvalidArgument("a pattern list is missing");
    for (const auto& item : list) {
      if (!item["regex"]) continue;
      RE2::Options options;
      options.set_log_errors(false);
      if (item["regex_flag"] && item["regex_flag"].as<std::string>() == "i") {
        options.set_case_sensitive(false);
      }
      auto re = std::make_unique<RE2>(item["regex"].as<std::string>(), options);
      if (!re->ok()) {
        ++skipped;
        continue;
      }
      Pattern p{std::move(re), {}};
      for (const auto& key : keys) {
        if (item[key]) {
          p.replacements.push_back(item[key].as<std::string>());
        } else {
          p.replacements.push_back(std::nullopt);
        }
      }
      out->push_back(std::move(p));
    }
    return Status::Ok();
  }

  // The groups of the first pattern of `list` that matches, and that pattern.
  static const Pattern* Match(const std::vector<Pattern>& list, std::string_view ua,
                              std::vector<std::string>* groups) {
    for (const auto& p : list) {
      const int n = p.re->NumberOfCapturingGroups();
      std::vector<re2::StringPiece> pieces(static_cast<size_t>(n) + 1);
      if (!p.re->Match(ua, 0, ua.size(), RE2::UNANCHORED, pieces.data(), n + 1)) continue;
      groups->clear();
      for (int i = 1; i <= n; ++i) groups->emplace_back(pieces[i].data(), pieces[i].size());
      return &p;
    }
    return nullptr;
  }

  ParsedUserAgent Compute(std::string_view ua) const {
    ParsedUserAgent out;
    std::vector<std::string> g;
    auto version = [](std::initializer_list<std::string> parts) {
      std::string v;
      for (const auto& p : parts) {
        if (p.empty()) break;
        v += (v.empty() ? "" : ".") + p;
      }
      return v;
    };
    if (const Pattern* p = Match(browsers, ua, &g)) {
      const auto& r = p->replacements;  // family, v1, v2, v3
      out.browser = Fill(r[0], g, 1);
      if (out.browser.empty()) out.browser = "Other";
      out.browser_version = version({Fill(r[1], g, 2), Fill(r[2], g, 3), Fill(r[3], g, 4)});
    }
    if (const Pattern* p = Match(oses, ua, &g)) {
      const auto& r = p->replacements;  // os, v1, v2, v3, v4
      out.os = Fill(r[0], g, 1);
      if (out.os.empty()) out.os = "Other";
      out.os_version =
          version({Fill(r[1], g, 2), Fill(r[2], g, 3), Fill(r[3], g, 4), Fill(r[4], g, 5)});
    }
    if (const Pattern* p = Match(devices, ua, &g)) {
      const auto& r = p->replacements;  // device, brand, model
      out.device = Fill(r[0], g, 1);
      if (out.device.empty()) out.device = "Other";
      out.device_brand = Fill(r[1], g, 0);
      out.device_model = Fill(r[2], g, 1);
    }
    out.device_type = DeviceType(out);
    return out;
  }

  static std::string DeviceType(const ParsedUserAgent& p) {
    auto has = [](const std::string& s, std::string_view what) {
      return s.find(what) != std::string::npos;
    };
    if (p.device == "Spider") return "bot";
    if (has(p.device, "iPad") || has(p.device, "Tablet") || has(p.device, "Kindle") ||
        has(p.device_model, "Tab") || has(p.device, "Nexus 7") || has(p.device, "Nexus 9")) {
      return "tablet";
    }
    if (p.device == "Other" || p.device == "Mac") {
      if (p.os == "Android" || p.os == "iOS" || has(p.os, "Windows Phone")) return "mobile";
      return "desktop";
    }
    return "mobile";
  }
};

UserAgentParser::UserAgentParser(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
UserAgentParser::~UserAgentParser() = default;

Result<std::unique_ptr<UserAgentParser>> UserAgentParser::Load(const std::string& regexes_path) {
  auto impl = std::make_unique<Impl>();
  try {
    YAML::Node root = YAML::LoadFile(regexes_path);
    Status st =
        impl->LoadList(root["user_agent_parsers"],
                       {"family_replacement", "v1_replacement", "v2_replacement", "v3_replacement"},
                       &impl->browsers);
    if (st.ok()) {
      st = impl->LoadList(root["os_parsers"],
                          {"os_replacement", "os_v1_replacement", "os_v2_replacement",
                           "os_v3_replacement", "os_v4_replacement"},
                          &impl->oses);
    }
    if (st.ok()) {
      st = impl->LoadList(root["device_parsers"],
                          {"device_replacement", "brand_replacement", "model_replacement"},
                          &impl->devices);
    }
    if (!st.ok()) {
      return InvalidArgument(
          fmt::format("user agent patterns '{}': {}", regexes_path, st.message()));
    }
  } catch (const YAML::Exception& e) {
    return InvalidArgument(fmt::format("user agent patterns '{}': {}", regexes_path, e.what()));
  }
  return std::unique_ptr<UserAgentParser>(new UserAgentParser(std::move(impl)));
}

ParsedUserAgent UserAgentParser::Parse(std::string_view user_agent) const {
  // Very long strings are cut: patterns look at the start, and a client must not make the
  // server scan megabytes.
  user_agent = user_agent.substr(0, 1024);
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->cache.find(std::string(user_agent));
    if (it != impl_->cache.end()) return it->second;
  }
  ParsedUserAgent parsed = impl_->Compute(user_agent);
  std::lock_guard lock(impl_->mu);
  if (impl_->cache.size() >= kCacheEntries) impl_->cache.clear();
  impl_->cache.emplace(std::string(user_agent), parsed);
  return parsed;
}

size_t UserAgentParser::patterns() const {
  return impl_->browsers.size() + impl_->oses.size() + impl_->devices.size();
}
size_t UserAgentParser::skipped() const { return impl_->skipped; }

}  // namespace fairway::enrich
