#pragma once
// DestinationFilter: which IP addresses a webhook may connect to. By default only public
// (globally routable) unicast addresses: loopback, unspecified, private, carrier-grade NAT,
// link-local, unique-local, site-local, multicast, broadcast and reserved ranges are refused,
// also when they hide inside IPv6 (IPv4-mapped ::ffff:a.b.c.d, IPv4-compatible ::a.b.c.d, NAT64
// 64:ff9b::/96, 6to4 2002::/16). An operator can allow listed networks
// (DeliveryDispatcherOptions::allow_networks), e.g. an internal endpoint or the loopback receivers
// of tests.
//
// The dispatcher applies it to the resolved address of every connection attempt (libcurl's
// open-socket callback), so a host name that resolves, or later re-resolves, to a refused
// address is refused too (DNS rebinding), and odd IPv4 spellings ("2130706433", "0x7f.1",
// "127.1") are judged by the address they resolve to. Immutable after construction:
// thread-safe.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

struct sockaddr;

namespace fairway::dispatch {

// An IP network: an address and a prefix length. IPv4 networks are kept as IPv4 (not mapped).
struct IpNetwork {
  bool v6 = false;
  // Network address; IPv4 uses the first 4 bytes. Bits past the prefix are zero.
  std::array<uint8_t, 16> bytes{};
  // 0-32 (IPv4) or 0-128 (IPv6).
  uint8_t prefix = 0;

  bool operator==(const IpNetwork&) const = default;
};

// Parses a comma-separated list of networks in CIDR notation ("127.0.0.0/8, ::1/128, 10.1.2.3";
// no prefix means a single address). Addresses must be in standard notation (dotted quad, RFC
// 4291 IPv6); host bits past the prefix are cleared. Empty entries are ignored, so "" is an
// empty list. InvalidArgument naming `field` and the entry at fault.
Result<std::vector<IpNetwork>> ParseNetworks(std::string_view list,
                                             std::string_view field = "allow_networks");

// "10.0.0.0/8", "::1/128".
std::string NetworkText(const IpNetwork& n);

class DestinationFilter {
 public:
  explicit DestinationFilter(std::vector<IpNetwork> allowed = {});

  // nullopt when a webhook may connect to `addr` (an AF_INET or AF_INET6 socket address);
  // otherwise the reason, a fixed text naming the address and its range:
  // "destination address 127.0.0.1 is not allowed (loopback)". Any other address family is
  // refused.
  std::optional<std::string> Check(const sockaddr* addr) const;

  // The range a non-public address belongs to ("loopback", "private", ...), nullopt for a
  // public one. For tests and tools; `addr` as for Check.
  static std::optional<std::string_view> ForbiddenRange(const sockaddr* addr);

 private:
  std::vector<IpNetwork> allowed_;
};

}  // namespace fairway::dispatch
