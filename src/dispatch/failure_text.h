#pragma once
// The texts a delivery's last_error shows for a peer's refusal. A tenant sees them through
// GET /v1/deliveries, so they are fixed texts chosen by the status code, never bytes the peer
// sent: a webhook pointed at an internal service must not turn Fairway into a way to read that
// service's answers. Pure functions: thread-safe.

#include <string>

namespace fairway::dispatch {

// "HTTP 503 Service Unavailable": the code and its standard reason phrase (RFC 9110 and the
// IANA registry), "HTTP 599" for a code without one.
std::string HttpFailureText(long code);

// "SMTP 550 mailbox unavailable": the reply code and a fixed meaning (RFC 5321 section 4.2.3),
// "SMTP 599" for a code without one.
std::string SmtpFailureText(long code);

}  // namespace fairway::dispatch
