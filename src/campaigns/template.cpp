#include "campaigns/template.h"

#include <fmt/format.h>

#include "common/json_writer.h"

namespace fairway::campaigns {

namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

void AppendEscaped(std::string* out, std::string_view value, Escape escape) {
  switch (escape) {
    case Escape::kNone:
      out->append(value);
      return;
    case Escape::kJson: {
      std::string quoted;
      AppendJsonString(&quoted, value);
      out->append(quoted, 1, quoted.size() - 2);  // without the quotes
      return;
    }
    case Escape::kUrl:
      for (unsigned char c : value) {
        if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
          out->push_back(static_cast<char>(c));
        } else {
          out->append(fmt::format("%{:02X}", c));
        }
      }
      return;
    case Escape::kLine:
      for (char c : value) {
        if (c != '\r' && c != '\n') out->push_back(c);
      }
      return;
  }
}

}  // namespace

std::string RenderTemplate(std::string_view tmpl, const TokenResolver& resolve, Escape escape) {
  std::string out;
  out.reserve(tmpl.size());
  size_t pos = 0;
  while (pos < tmpl.size()) {
    size_t open = tmpl.find("{{", pos);
    if (open == std::string_view::npos) break;
    size_t close = tmpl.find("}}", open + 2);
    if (close == std::string_view::npos) break;
    out.append(tmpl.substr(pos, open - pos));
    std::string_view token = tmpl.substr(open + 2, close - open - 2);
    std::string_view fallback;
    bool has_fallback = false;
    if (size_t bar = token.find('|'); bar != std::string_view::npos) {
      fallback = Trim(token.substr(bar + 1));
      token = token.substr(0, bar);
      has_fallback = true;
    }
    auto value = resolve(Trim(token));
    if (value && !value->empty()) {
      AppendEscaped(&out, *value, escape);
    } else if (has_fallback) {
      // The fallback is template text: inside a JSON body it is JSON text already.
      AppendEscaped(&out, fallback, escape == Escape::kJson ? Escape::kNone : escape);
    }
    pos = close + 2;
  }
  out.append(tmpl.substr(pos));
  return out;
}

}  // namespace fairway::campaigns
