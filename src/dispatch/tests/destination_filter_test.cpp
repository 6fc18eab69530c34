#include "dispatch/destination_filter.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include "dispatch/failure_text.h"

namespace fairway::dispatch {
namespace {

// A socket address for an IPv4 or IPv6 literal.
sockaddr_storage Addr(const std::string& ip) {
  sockaddr_storage ss{};
  auto* in = reinterpret_cast<sockaddr_in*>(&ss);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, ip.c_str(), &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
  } else if (inet_pton(AF_INET6, ip.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
  } else {
    ADD_FAILURE() << "not an address: " << ip;
  }
  return ss;
}

std::optional<std::string> Check(const DestinationFilter& f, const std::string& ip) {
  sockaddr_storage ss = Addr(ip);
  return f.Check(reinterpret_cast<const sockaddr*>(&ss));
}

std::optional<std::string_view> Range(const std::string& ip) {
  sockaddr_storage ss = Addr(ip);
  return DestinationFilter::ForbiddenRange(reinterpret_cast<const sockaddr*>(&ss));
}

TEST(DestinationFilterTest, RefusesEveryNonPublicRangeIncludingItsEdges) {
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"0.0.0.0", "unspecified"},
      {"0.255.255.255", "unspecified"},
      {"10.0.0.0", "private"},
      {"10.255.255.255", "private"},
      {"100.64.0.0", "shared (CGNAT)"},
      {"100.127.255.255", "shared (CGNAT)"},
      {"127.0.0.1", "loopback"},
      {"127.255.255.254", "loopback"},
      {"169.254.169.254", "link-local"},
      {"172.16.0.0", "private"},
      {"172.31.255.255", "private"},
      {"192.0.0.8", "reserved"},
      {"192.168.1.1", "private"},
      {"198.18.0.1", "reserved"},
      {"224.0.0.1", "multicast"},
      {"239.255.255.255", "multicast"},
      {"240.0.0.1", "reserved"},
      {"255.255.255.255", "reserved"},
      {"::", "unspecified"},
      {"::1", "loopback"},
      {"fe80::1", "link-local"},
      {"febf:ffff::1", "link-local"},
      {"fec0::1", "site-local"},
      {"fc00::1", "unique-local"},
      {"fdff:ffff::1", "unique-local"},
      {"ff02::1", "multicast"},
      {"100::1", "reserved"},
      {"2001:db8::1", "reserved"},
      // IPv6 wrappers of IPv4 addresses are judged by the IPv4 address.
      {"::ffff:127.0.0.1", "loopback"},
      {"::ffff:10.1.2.3", "private"},
      {"::ffff:169.254.169.254", "link-local"},
      {"::ffff:0.0.0.0", "unspecified"},
      {"::127.0.0.1", "loopback"},           // IPv4-compatible
      {"::2", "unspecified"},                // IPv4-compatible 0.0.0.2
      {"64:ff9b::a9fe:a9fe", "link-local"},  // NAT64 of 169.254.169.254
      {"64:ff9b::7f00:1", "loopback"},
      {"2002:7f00:1::1", "loopback"},      // 6to4 of 127.0.0.1
      {"2002:a00:1::", "private"},         // 6to4 of 10.0.0.1
      {"::ffff:0:127.0.0.1", "loopback"},  // IPv4-translated
      {"::ffff:0:a00:1", "private"},       // IPv4-translated 10.0.0.1
      {"64:ff9b:1::a00:1", "reserved"},    // local-use NAT64
      {"64:ff9b:1:ffff::808:808", "reserved"},
  };
  DestinationFilter filter;
  for (const auto& [ip, range] : refused) {
    SCOPED_TRACE(ip);
    EXPECT_EQ(Range(ip), std::optional<std::string_view>(range));
    auto why = Check(filter, ip);
    ASSERT_TRUE(why.has_value());
    EXPECT_NE(why->find(" is not allowed (" + range + ")"), std::string::npos) << *why;
  }
}

TEST(DestinationFilterTest, AllowsPublicAddressesJustOutsideTheRanges) {
  DestinationFilter filter;
  for (std::string ip : {"1.1.1.1",
                         "8.8.8.8",
                         "9.255.255.255",
                         "11.0.0.0",
                         "100.63.255.255",
                         "100.128.0.0",
                         "126.255.255.255",
                         "128.0.0.0",
                         "169.253.255.255",
                         "169.255.0.0",
                         "172.15.255.255",
                         "172.32.0.0",
                         "192.167.255.255",
                         "192.169.0.0",
                         "198.17.255.255",
                         "198.20.0.0",
                         "223.255.255.255",
                         "2606:4700:4700::1111",
                         "2a00:1450:4001::200e",
                         "::ffff:8.8.8.8",
                         "64:ff9b::808:808",
                         "2002:808:808::1",
                         "fbff:ffff::1",
                         "fe7f::1"}) {
    SCOPED_TRACE(ip);
    EXPECT_EQ(Range(ip), std::nullopt);
    EXPECT_EQ(Check(filter, ip), std::nullopt);
  }
}

TEST(DestinationFilterTest, RefusalNamesTheAddressInItsPlainForm) {
  DestinationFilter filter;
  EXPECT_EQ(Check(filter, "127.0.0.1"),
            std::optional<std::string>("destination address 127.0.0.1 is not allowed (loopback)"));
  EXPECT_EQ(Check(filter, "::ffff:10.0.0.7"),
            std::optional<std::string>("destination address 10.0.0.7 is not allowed (private)"));
  EXPECT_EQ(Check(filter, "0:0:0:0:0:0:0:1"),
            std::optional<std::string>("destination address ::1 is not allowed (loopback)"));
}

TEST(DestinationFilterTest, RefusesAddressesThatAreNotIp) {
  DestinationFilter filter(*ParseNetworks("0.0.0.0/0,::/0"));
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  EXPECT_TRUE(filter.Check(reinterpret_cast<const sockaddr*>(&un)).has_value());
  EXPECT_TRUE(filter.Check(nullptr).has_value());
}

TEST(DestinationFilterTest, AllowListLetsExactlyItsNetworksThrough) {
  DestinationFilter filter(*ParseNetworks("10.1.0.0/16, ::1/128 ,fd00:1::/32"));
  EXPECT_EQ(Check(filter, "10.1.0.0"), std::nullopt);
  EXPECT_EQ(Check(filter, "10.1.255.255"), std::nullopt);
  EXPECT_EQ(Check(filter, "::ffff:10.1.2.3"), std::nullopt);  // mapped: judged as IPv4
  EXPECT_TRUE(Check(filter, "10.2.0.0").has_value());
  EXPECT_TRUE(Check(filter, "10.0.255.255").has_value());
  EXPECT_EQ(Check(filter, "::1"), std::nullopt);
  EXPECT_TRUE(Check(filter, "127.0.0.1").has_value());  // ::1 does not allow IPv4 loopback
  EXPECT_EQ(Check(filter, "fd00:1:ffff::1"), std::nullopt);
  EXPECT_TRUE(Check(filter, "fd00:2::1").has_value());
  // An allow list of everything (prefix 0) is possible, per family.
  DestinationFilter v4_all(*ParseNetworks("0.0.0.0/0"));
  EXPECT_EQ(Check(v4_all, "127.0.0.1"), std::nullopt);
  EXPECT_EQ(Check(v4_all, "::ffff:192.168.0.1"), std::nullopt);
  EXPECT_TRUE(Check(v4_all, "::1").has_value());
}

TEST(DestinationFilterTest, ParsesNetworkListsAndNamesTheBadEntry) {
  auto empty = ParseNetworks("");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  auto commas = ParseNetworks(" , ,");
  ASSERT_TRUE(commas.ok());
  EXPECT_TRUE(commas->empty());

  auto n = ParseNetworks("10.1.2.3/8,127.0.0.1,::1,fe80::1/10,::ffff:127.0.0.0/104,1.2.3.4/0");
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  std::vector<std::string> texts;
  for (const auto& net : *n) texts.push_back(NetworkText(net));
  EXPECT_EQ(texts, (std::vector<std::string>{"10.0.0.0/8", "127.0.0.1/32", "::1/128", "fe80::/10",
                                             "127.0.0.0/8", "0.0.0.0/0"}));

  for (std::string bad :
       {"10.0.0.0/33", "::/129", "abc", "10.0.0.0/", "10.0.0.0/8x", "10.0.0.0/-1", "127.1",
        "2130706433", "0x7f.0.0.1", "10.0.0.0/8/8", "::ffff:1.2.3.4/95", "[::1]", "10.0.0.0 /8"}) {
    SCOPED_TRACE(bad);
    auto r = ParseNetworks("127.0.0.0/8," + bad, "dispatch.allow_networks");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("dispatch.allow_networks"), std::string::npos);
    EXPECT_NE(r.status().message().find("'" + bad + "'"), std::string::npos)
        << r.status().message();
  }
}

TEST(DestinationFilterTest, LongAllowListsWork) {
  std::string list;
  for (int i = 0; i < 4096; ++i) {
    list += (i ? "," : "") + std::to_string(10 + i / 256 % 2) + ".0." + std::to_string(i % 256) +
            ".0/24";
  }
  auto n = ParseNetworks(list);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(n->size(), 4096u);
  DestinationFilter filter(std::move(n).value());
  EXPECT_EQ(Check(filter, "11.0.255.1"), std::nullopt);
  EXPECT_TRUE(Check(filter, "192.168.0.1").has_value());
}

TEST(FailureTextTest, StatusCodeAndFixedReasonOnly) {
  EXPECT_EQ(HttpFailureText(500), "HTTP 500 Internal Server Error");
  EXPECT_EQ(HttpFailureText(503), "HTTP 503 Service Unavailable");
  EXPECT_EQ(HttpFailureText(404), "HTTP 404 Not Found");
  EXPECT_EQ(HttpFailureText(302), "HTTP 302 Found");
  EXPECT_EQ(HttpFailureText(599), "HTTP 599");
  EXPECT_EQ(HttpFailureText(0), "HTTP 0");
  EXPECT_EQ(HttpFailureText(-1), "HTTP -1");
  EXPECT_EQ(SmtpFailureText(550), "SMTP 550 mailbox unavailable");
  EXPECT_EQ(SmtpFailureText(451), "SMTP 451 local error in processing");
  EXPECT_EQ(SmtpFailureText(599), "SMTP 599");
}

}  // namespace
}  // namespace fairway::dispatch
