#include "dispatch/destination_filter.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace fairway::dispatch {
namespace {

struct Range {
  uint32_t network;  // host byte order
  int prefix;
  std::string_view name;
};

// IPv4 ranges that are not public unicast (RFC 6890 and friends).
constexpr Range kV4Ranges[] = {
    {0x00000000, 8, "unspecified"},      // 0.0.0.0/8 "this network"; 0.0.0.0 reaches the host
    {0x0a000000, 8, "private"},          // 10.0.0.0/8
    {0x64400000, 10, "shared (CGNAT)"},  // 100.64.0.0/10
    {0x7f000000, 8, "loopback"},         // 127.0.0.0/8
    {0xa9fe0000, 16, "link-local"},      // 169.254.0.0/16, cloud metadata endpoints
    {0xac100000, 12, "private"},         // 172.16.0.0/12
    {0xc0000000, 24, "reserved"},        // 192.0.0.0/24 IETF protocol assignments
    {0xc0a80000, 16, "private"},         // 192.168.0.0/16
    {0xc6120000, 15, "reserved"},        // 198.18.0.0/15 benchmarking
    {0xe0000000, 4, "multicast"},        // 224.0.0.0/4
    {0xf0000000, 4, "reserved"},         // 240.0.0.0/4, 255.255.255.255 broadcast included
};

std::optional<std::string_view> V4Range(uint32_t a) {
  for (const auto& r : kV4Ranges) {
    uint32_t mask = r.prefix == 0 ? 0 : ~uint32_t{0} << (32 - r.prefix);
    if ((a & mask) == r.network) return r.name;
  }
  return std::nullopt;
}

uint32_t V4At(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

bool AllZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

// The IPv4 address an IPv6 address is only a wrapper for (::ffff:a.b.c.d), if any. Traffic to
// it is IPv4 traffic, so it is judged (and allowed) as IPv4.
std::optional<uint32_t> Mapped(const uint8_t* b) {
  if (AllZero(b, 10) && b[10] == 0xff && b[11] == 0xff) return V4At(b + 12);
  return std::nullopt;
}

std::optional<std::string_view> V6Range(const uint8_t* b) {
  if (AllZero(b, 15)) {
    if (b[15] == 0) return "unspecified";  // ::
    if (b[15] == 1) return "loopback";     // ::1
  }
  if (b[0] == 0xff) return "multicast";                                // ff00::/8
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return "link-local";      // fe80::/10
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return "site-local";      // fec0::/10
  if ((b[0] & 0xfe) == 0xfc) return "unique-local";                    // fc00::/7
  if (b[0] == 0x01 && AllZero(b + 1, 7)) return "reserved";            // 100::/64 discard
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8) {  // 2001:db8::/32
    return "reserved";
  }
  if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && b[4] == 0x00 &&
      b[5] == 0x01) {
    return "reserved";  // 64:ff9b:1::/48, local-use NAT64 (RFC 8215): may reach any IPv4
  }
  // IPv6 forms that carry an IPv4 destination: judged by that address.
  std::optional<uint32_t> embedded;
  if (AllZero(b, 12)) {
    embedded = V4At(b + 12);  // ::a.b.c.d (IPv4-compatible, deprecated)
  } else if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && AllZero(b + 4, 8)) {
    embedded = V4At(b + 12);  // 64:ff9b::/96 NAT64
  } else if (AllZero(b, 8) && b[8] == 0xff && b[9] == 0xff && b[10] == 0 && b[11] == 0) {
    embedded = V4At(b + 12);  // ::ffff:0:a.b.c.d (IPv4-translated, RFC 2765)
  } else if (b[0] == 0x20 && b[1] == 0x02) {
    embedded = V4At(b + 2);  // 2002::/16 6to4
  }
  if (embedded) {
    if (auto r = V4Range(*embedded)) return r;
  }
  return std::nullopt;
}

bool Contains(const IpNetwork& n, bool v6, const uint8_t* b) {
  if (n.v6 != v6) return false;
  int bits = n.prefix;
  for (int i = 0; bits > 0; ++i, bits -= 8) {
    uint8_t mask = bits >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - bits));
    if ((b[i] & mask) != n.bytes[i]) return false;
  }
  return true;
}

// An address as the filter judges it: IPv4 (4 bytes, also for IPv4-mapped IPv6) or IPv6.
struct Judged {
  bool ok = false;
  bool v6 = false;
  uint8_t bytes[16] = {0};
  char text[INET6_ADDRSTRLEN] = {0};
};

Judged Normalise(const sockaddr* addr) {
  Judged j;
  if (addr == nullptr) return j;
  if (addr->sa_family == AF_INET) {
    sockaddr_in in;
    std::memcpy(&in, addr, sizeof in);
    std::memcpy(j.bytes, &in.sin_addr, 4);
  } else if (addr->sa_family == AF_INET6) {
    sockaddr_in6 in6;
    std::memcpy(&in6, addr, sizeof in6);
    std::memcpy(j.bytes, &in6.sin6_addr, 16);
    if (auto v4 = Mapped(j.bytes)) {
      uint32_t be = htonl(*v4);
      std::memcpy(j.bytes, &be, 4);
      std::memset(j.bytes + 4, 0, 12);
    } else {
      j.v6 = true;
    }
  } else {
    return j;
  }
  j.ok = inet_ntop(j.v6 ? AF_INET6 : AF_INET, j.bytes, j.text, sizeof j.text) != nullptr;
  return j;
}

}  // namespace

Result<std::vector<IpNetwork>> ParseNetworks(std::string_view list, std::string_view field) {
  std::vector<IpNetwork> out;
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view entry = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    while (!entry.empty() && (entry.front() == ' ' || entry.front() == '\t'))
      entry.remove_prefix(1);
    while (!entry.empty() && (entry.back() == ' ' || entry.back() == '\t')) entry.remove_suffix(1);
    if (entry.empty()) continue;
    auto bad = [&](std::string_view why) {
      return InvalidArgument(
          fmt::format("{}: '{}' is not a network ({}); use CIDR notation such "
                      "as 10.0.0.0/8 or fd00::/8",
                      field, entry, why));
    };
    size_t slash = entry.find('/');
    std::string address(entry.substr(0, slash));
    IpNetwork n;
    if (inet_pton(AF_INET, address.c_str(), n.bytes.data()) == 1) {
      n.v6 = false;
    } else if (inet_pton(AF_INET6, address.c_str(), n.bytes.data()) == 1) {
      n.v6 = true;
      if (auto v4 = Mapped(n.bytes.data())) {
        // ::ffff:a.b.c.d/n is the IPv4 network a.b.c.d/(n-96), as the filter judges addresses.
        uint32_t be = htonl(*v4);
        n.bytes = {};
        std::memcpy(n.bytes.data(), &be, 4);
        n.v6 = false;
      }
    } else {
      return bad("not an IPv4 or IPv6 address");
    }
    int max = n.v6 ? 128 : 32;
    int prefix = max;
    if (slash != std::string_view::npos) {
      std::string_view p = entry.substr(slash + 1);
      auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
      bool mapped_v4 = !n.v6 && address.find(':') != std::string::npos;
      if (mapped_v4) prefix -= 96;
      if (p.empty() || ec != std::errc() || end != p.data() + p.size() || prefix < 0 ||
          prefix > max) {
        return bad(fmt::format("the prefix length must be 0-{}", mapped_v4 ? 128 : max));
      }
    } else if (!n.v6 && address.find(':') != std::string::npos) {
      prefix = 32;
    }
    n.prefix = static_cast<uint8_t>(prefix);
    for (int i = 0; i < 16; ++i) {
      int keep = std::clamp(prefix - i * 8, 0, 8);
      n.bytes[i] &= keep == 0 ? 0 : static_cast<uint8_t>(0xff << (8 - keep));
    }
    out.push_back(n);
  }
  return out;
}

std::string NetworkText(const IpNetwork& n) {
  char text[INET6_ADDRSTRLEN] = {0};
  inet_ntop(n.v6 ? AF_INET6 : AF_INET, n.bytes.data(), text, sizeof text);
  return fmt::format("{}/{}", text, n.prefix);
}

DestinationFilter::DestinationFilter(std::vector<IpNetwork> allowed)
    : allowed_(std::move(allowed)) {}

std::optional<std::string_view> DestinationFilter::ForbiddenRange(const sockaddr* addr) {
  Judged j = Normalise(addr);
  if (!j.ok) return "not an IP address";
  return j.v6 ? V6Range(j.bytes) : V4Range(V4At(j.bytes));
}

std::optional<std::string> DestinationFilter::Check(const sockaddr* addr) const {
  Judged j = Normalise(addr);
  if (!j.ok) return std::string("destination address is not an IPv4 or IPv6 address");
  auto range = j.v6 ? V6Range(j.bytes) : V4Range(V4At(j.bytes));
  if (!range) return std::nullopt;
  for (const auto& n : allowed_) {
    if (Contains(n, j.v6, j.bytes)) return std::nullopt;
  }
  return fmt::format("destination address {} is not allowed ({})", j.text, *range);
}

}  // namespace fairway::dispatch
