#pragma once
// The key layout of the "leads" state space (inside the engine's (tenant, "leads") StateTxn
// prefix), shared by the writer (LeadProcessor) and the reader (LeadStore). See README.md.
//
//   p \0 u \0 <userId>                                 -> LeadProfile (known lead)
//   p \0 a \0 <anonymousId>                            -> LeadProfile (anonymous lead)
//   c \0 <kind> \0 <id> \0 <userId U>                  -> be64 time, messageId: "id belongs to U"
//                                                        (as first asserted; the current time of
//                                                        the claim is the link in U's profile)
//   m \0 u \0 <userId U> \0 <kind> \0 <id>             -> "" (reverse of the claim above)
//   e \0 <lower-case email> \0 <kind> \0 <id>          -> be64 time
//   g \0 <groupId> \0 <field> \0 <be64 time> \0 <messageId> -> JSON value of the account trait
//
// <kind> is 'u' (userId) or 'a' (anonymousId). A component in the middle of a key must not hold
// a NUL byte (it would make prefix scans ambiguous); the processor skips such ids for links,
// emails and accounts (the lead's own profile is still kept: its id ends the key).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/coding.h"

namespace fairway::identity {

// Which namespace an identifier lives in.
enum class IdKind : char {
  kUser = 'u',
  kAnonymous = 'a',
};

inline constexpr int64_t kDayMs = 86'400'000;

// The UTC day of an event time (floor division, so times before 1970 land on negative days).
inline int64_t DayOf(int64_t ms) {
  int64_t d = ms / kDayMs;
  return (ms % kDayMs < 0) ? d - 1 : d;
}

// True when `s` may be used as a middle component of a key.
inline bool IsKeySafe(std::string_view s) {
  return !s.empty() && s.find('\0') == std::string_view::npos;
}

inline bool IsIdKind(char c) { return c == 'u' || c == 'a'; }

// The text of a JSON string literal (a stored trait value), unescaped; nullopt when `json` is
// not a string. Defined in lead_store.cpp.
std::optional<std::string> JsonStringText(std::string_view json);

namespace keys {

inline constexpr std::string_view kProfiles{"p\0", 2};
inline constexpr std::string_view kUserProfiles{"p\0u\0", 4};
inline constexpr std::string_view kAnonymousProfiles{"p\0a\0", 4};

inline void AppendPart(std::string* out, std::string_view part) {
  out->append(part);
  out->push_back('\0');
}

inline void AppendKind(std::string* out, IdKind kind) {
  out->push_back(static_cast<char>(kind));
  out->push_back('\0');
}

// p \0 <kind> \0 <id>
inline void Profile(std::string* out, IdKind kind, std::string_view id) {
  out->assign("p", 1);
  out->push_back('\0');
  AppendKind(out, kind);
  out->append(id);
}

// c \0 <kind> \0 <id> \0 : every claim made about (kind, id).
inline void ClaimPrefix(std::string* out, IdKind kind, std::string_view id) {
  out->assign("c", 1);
  out->push_back('\0');
  AppendKind(out, kind);
  AppendPart(out, id);
}

inline void Claim(std::string* out, IdKind kind, std::string_view id, std::string_view owner) {
  ClaimPrefix(out, kind, id);
  out->append(owner);
}

// m \0 u \0 <owner> \0 : every id claimed by the known lead `owner`.
inline void MemberPrefix(std::string* out, std::string_view owner) {
  out->assign("m", 1);
  out->push_back('\0');
  AppendKind(out, IdKind::kUser);
  AppendPart(out, owner);
}

inline void Member(std::string* out, std::string_view owner, IdKind kind, std::string_view id) {
  MemberPrefix(out, owner);
  AppendKind(out, kind);
  out->append(id);
}

// e \0 <email> \0
inline void EmailPrefix(std::string* out, std::string_view email_lower) {
  out->assign("e", 1);
  out->push_back('\0');
  AppendPart(out, email_lower);
}

inline void Email(std::string* out, std::string_view email_lower, IdKind kind,
                  std::string_view id) {
  EmailPrefix(out, email_lower);
  AppendKind(out, kind);
  out->append(id);
}

// g \0 <groupId> \0
inline void AccountPrefix(std::string* out, std::string_view group_id) {
  out->assign("g", 1);
  out->push_back('\0');
  AppendPart(out, group_id);
}

inline void AccountTrait(std::string* out, std::string_view group_id, std::string_view field,
                         int64_t time_ms, std::string_view message_id) {
  AccountPrefix(out, group_id);
  AppendPart(out, field);
  PutFixed64BE(out, static_cast<uint64_t>(time_ms));
  out->push_back('\0');
  out->append(message_id);
}

// Splits "<kind> \0 <id>" (the tail of member and email keys). False when malformed.
inline bool SplitKindId(std::string_view tail, IdKind* kind, std::string_view* id) {
  if (tail.size() < 3 || !IsIdKind(tail[0]) || tail[1] != '\0') return false;
  *kind = static_cast<IdKind>(tail[0]);
  *id = tail.substr(2);
  return true;
}

}  // namespace keys

// Claim values: be64 event time followed by the messageId of the activity that made the claim.
inline void EncodeClaimValue(std::string* out, int64_t time_ms, std::string_view message_id) {
  out->clear();
  PutFixed64BE(out, static_cast<uint64_t>(time_ms));
  out->append(message_id);
}

}  // namespace fairway::identity
