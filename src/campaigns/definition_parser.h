#pragma once
// DefinitionParser: reads campaign definitions (docs/campaigns.md) from Boost.JSON values with
// the JSON path of the value in hand, so every error names the bad field
// ("flow[2].choices[0].if.field: ..."); the first error wins. Shared by the parts of the
// definition parser: campaign.cpp (the campaign, steps, conditions), campaign_triggers.cpp and
// the action kinds (actions/). Internal to the campaigns module: it exposes Boost.JSON, so only
// the module's .cpp files include it.

#include <boost/json.hpp>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "campaigns/action.h"
#include "campaigns/campaign.h"
#include "common/status.h"

namespace fairway::campaigns {

namespace json = boost::json;

// `s` with ASCII letters lower-cased.
std::string Lower(std::string_view s);

// Parsing state of one definition. Not thread-safe; lives for one ParseCampaign call.
class DefinitionParser {
 public:
  // The first error; OK while none.
  Status error;

  // Records InvalidArgument "<path>: <msg>" unless an error is recorded already; false.
  bool Fail(const std::string& path, std::string_view msg);
  bool failed() const { return !error.ok(); }

  // The path of member `key` of `path` ("flow[2]" -> "flow[2].key"), and of element `i`.
  static std::string At(const std::string& path, std::string_view key);
  static std::string Index(const std::string& path, size_t i);

  // `v` as an object, or nullptr after failing "must be an object".
  const json::object* Object(const json::value& v, const std::string& path);

  // Rejects keys outside `allowed`, so a typo never silently does nothing.
  bool OnlyKeys(const json::object& o, const std::string& path,
                std::initializer_list<std::string_view> allowed);

  // Member `key` of `o` as a string of at most `max_len` bytes (not empty if `required`);
  // nullopt when absent, null or bad (failing if bad, or absent and `required`).
  std::optional<std::string> String(const json::object& o, std::string_view key,
                                    const std::string& path, bool required, size_t max_len = 4096);

  // Member `key` as an integer within [min, max]; nullopt as for String.
  std::optional<int64_t> Int(const json::object& o, std::string_view key, const std::string& path,
                             bool required, int64_t min, int64_t max);

  // Member `key` as true or false; nullopt when absent or null (failing if not a boolean).
  std::optional<bool> Bool(const json::object& o, std::string_view key, const std::string& path);

  // Member `key` as an object of names to strings (numbers and booleans as their JSON text);
  // empty when absent.
  std::map<std::string, std::string> StringMap(const json::object& o, std::string_view key,
                                               const std::string& path);

  // A value test: {"op": "...", "value": ...} or a bare string / number / array (= "is").
  // `owner_key` is the key of the object the test is part of ("field", "property"), if any.
  std::optional<ValueTest> Test(const json::value& v, const std::string& path,
                                std::string_view owner_key = {});

  // A filter or choice condition, nested at most kMaxConditionDepth deep.
  std::optional<Condition> ParseCondition(const json::value& v, const std::string& path,
                                          size_t depth);

  // "all", "any", or an expression over filter numbers: "1 and (2 or not 3)".
  std::optional<Condition> FilterLogic(std::string_view logic, std::vector<Condition> filters,
                                       const std::string& path);

 private:
  static void SkipSpace(const std::string& s, size_t& pos);
  static bool Word(const std::string& s, size_t& pos, std::string_view w);
  // expr := term ("or" term)* ; term := factor ("and" factor)* ;
  // factor := "not" factor | "(" expr ")" | number
  std::optional<Condition> Expr(const std::string& s, size_t& pos, const std::vector<Condition>& f,
                                std::vector<bool>& used, const std::string& path, size_t depth);
  std::optional<Condition> Term(const std::string& s, size_t& pos, const std::vector<Condition>& f,
                                std::vector<bool>& used, const std::string& path, size_t depth);
  std::optional<Condition> Factor(const std::string& s, size_t& pos,
                                  const std::vector<Condition>& f, std::vector<bool>& used,
                                  const std::string& path, size_t depth);
};

// An email address, or a template that renders one; empty passes (a default applies). Fails
// `p` at `path` otherwise.
bool CheckAddress(DefinitionParser& p, std::string_view address, const std::string& path);

// A trigger (docs/campaigns.md "Triggers"; campaign_triggers.cpp) of campaign `campaign_id`.
std::optional<Trigger> ParseTrigger(DefinitionParser& p, const json::value& v,
                                    const std::string& path, std::string_view campaign_id);

// An action (docs/campaigns.md "Actions") of a kind in the registry of action.h.
std::shared_ptr<const Action> ParseAction(DefinitionParser& p, const json::value& v,
                                          const std::string& path);

}  // namespace fairway::campaigns
