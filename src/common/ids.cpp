#include "common/ids.h"

namespace fairway {

bool IsValidTenantId(std::string_view id) {
  if (id.empty() || id.size() > 63) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(id[0])) return false;
  for (char c : id.substr(1)) {
    if (!alnum(c) && c != '_' && c != '-') return false;
  }
  return true;
}

}  // namespace fairway
