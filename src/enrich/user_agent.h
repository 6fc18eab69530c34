#pragma once
// UserAgentParser: a User-Agent string into browser, operating system and device, by the
// ua-parser project's patterns (Debian's uap-core, /usr/share/uap-core/regexes.yaml) compiled
// with RE2. The first pattern of each list that matches wins, as the ua-parser specification
// says. Results are cached by User-Agent (web traffic repeats a few thousand of them).
//
// Thread-safe.

#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace fairway::enrich {

inline constexpr char kDefaultRegexesPath[] = "/usr/share/uap-core/regexes.yaml";

struct ParsedUserAgent {
  // Empty fields are unknown; a family the patterns do not know is "Other".
  std::string browser = "Other", browser_version;
  std::string os = "Other", os_version;
  std::string device = "Other", device_brand, device_model;
  // "desktop", "mobile", "tablet" or "bot", derived from the device and the operating system.
  std::string device_type = "desktop";
  bool operator==(const ParsedUserAgent&) const = default;
};

class UserAgentParser {
 public:
  // Loads and compiles the patterns; patterns RE2 cannot compile (look-arounds) are skipped
  // and counted.
  static Result<std::unique_ptr<UserAgentParser>> Load(const std::string& regexes_path);
  ~UserAgentParser();

  ParsedUserAgent Parse(std::string_view user_agent) const;
  // Patterns loaded and skipped.
  size_t patterns() const;
  size_t skipped() const;

  struct Impl;

 private:
  explicit UserAgentParser(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fairway::enrich
