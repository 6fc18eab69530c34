#include <fmt/format.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <boost/json.hpp>

#include "enrich/enricher.h"
#include "testing/status_matchers.h"

namespace fairway::enrich {
namespace {

namespace json = boost::json;

const UserAgentParser& Parser() {
  static auto parser = UserAgentParser::Load(kDefaultRegexesPath);
  EXPECT_OK(parser);
  return **parser;
}

constexpr char kChromeWindows[] =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.6099.109 Safari/537.36";
constexpr char kIphone[] =
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.1 Mobile/15E148 Safari/604.1";

TEST(UserAgentParserTest, BrowsersSystemsAndDevicesAreNamed) {
  const auto& p = Parser();
  EXPECT_GT(p.patterns(), 1000u);
  auto chrome = p.Parse(kChromeWindows);
  EXPECT_EQ(chrome.browser, "Chrome");
  EXPECT_EQ(chrome.browser_version, "120.0.6099");
  EXPECT_EQ(chrome.os, "Windows");
  EXPECT_EQ(chrome.os_version, "10");
  EXPECT_EQ(chrome.device_type, "desktop");
  auto iphone = p.Parse(kIphone);
  EXPECT_EQ(iphone.browser, "Mobile Safari");
  EXPECT_EQ(iphone.os, "iOS");
  EXPECT_EQ(iphone.os_version, "17.1.2");
  EXPECT_EQ(iphone.device, "iPhone");
  EXPECT_EQ(iphone.device_brand, "Apple");
  EXPECT_EQ(iphone.device_type, "mobile");
  EXPECT_EQ(
      p.Parse("Mozilla/5.0 (iPad; CPU OS 16_0 like Mac OS X) AppleWebKit/605.1.15").device_type,
      "tablet");
  auto bot = p.Parse("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)");
  EXPECT_EQ(bot.device, "Spider");
  EXPECT_EQ(bot.device_type, "bot");
  auto android = p.Parse(
      "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
      "Chrome/119.0.0.0 Mobile Safari/537.36");
  EXPECT_EQ(android.os, "Android");
  EXPECT_EQ(android.device_brand, "Samsung");
  EXPECT_EQ(android.device_type, "mobile");
  EXPECT_EQ(p.Parse(""), ParsedUserAgent{});
  EXPECT_EQ(p.Parse("\x01\xff garbage"), ParsedUserAgent{});
  // Cached: the same answer again; a huge string is cut, not scanned whole.
  EXPECT_EQ(p.Parse(kChromeWindows), chrome);
  EXPECT_EQ(p.Parse(std::string(kChromeWindows) + std::string(1 << 20, 'x')).browser, "Chrome");
  EXPECT_THAT(UserAgentParser::Load("/nonexistent/regexes.yaml").status(),
              testing::StatusIs(StatusCode::kInvalidArgument));
}

// The ua-parser project's own test cases, as Debian ships them: the families this parser names
// agree with the project's expectations (all of them on Debian 12's uap-core, where RE2
// compiles every pattern).
TEST(UserAgentParserTest, AgreesWithTheUaParserProjectsTestCases) {
  const auto& p = Parser();
  auto agreement = [&](const std::string& file, auto&& check) {
    YAML::Node cases = YAML::LoadFile(std::string("/usr/share/uap-core/tests/") + file);
    size_t total = 0, agreed = 0;
    for (const auto& c : cases["test_cases"]) {
      ++total;
      agreed += check(c, p.Parse(c["user_agent_string"].as<std::string>())) ? 1 : 0;
    }
    EXPECT_GT(total, 400u) << file;
    return static_cast<double>(agreed) / static_cast<double>(total);
  };
  auto str = [](const YAML::Node& n) { return n && !n.IsNull() ? n.as<std::string>() : ""; };
  double ua = agreement("test_ua.yaml", [&](const YAML::Node& c, const ParsedUserAgent& r) {
    return str(c["family"]) == r.browser;
  });
  double os = agreement("test_os.yaml", [&](const YAML::Node& c, const ParsedUserAgent& r) {
    return str(c["family"]) == r.os;
  });
  double device = agreement("test_device.yaml", [&](const YAML::Node& c, const ParsedUserAgent& r) {
    return str(c["family"]) == r.device && str(c["brand"]) == r.device_brand;
  });
  std::cout << fmt::format(
      "agreement: browsers {:.4f}, systems {:.4f}, devices {:.4f}; "
      "{} patterns, {} skipped\n",
      ua, os, device, p.patterns(), p.skipped());
  EXPECT_GE(ua, 0.999);
  EXPECT_GE(os, 0.999);
  EXPECT_GE(device, 0.999);
}

TEST(EnrichTest, ReferrersAreClassified) {
  const std::string page = "https://shop.example.com/pricing?utm_source=x";
  EXPECT_EQ(ClassifyReferrer("", page), "direct");
  EXPECT_EQ(ClassifyReferrer("https://www.google.com/", page), "search");
  EXPECT_EQ(ClassifyReferrer("https://www.google.co.uk/search?q=x", page), "search");
  EXPECT_EQ(ClassifyReferrer("https://www.bing.com/search?q=x", page), "search");
  EXPECT_EQ(ClassifyReferrer("https://duckduckgo.com/", page), "search");
  EXPECT_EQ(ClassifyReferrer("https://t.co/abc", page), "social");
  EXPECT_EQ(ClassifyReferrer("https://l.facebook.com/l.php?u=x", page), "social");
  EXPECT_EQ(ClassifyReferrer("https://www.linkedin.com/feed/", page), "social");
  EXPECT_EQ(ClassifyReferrer("https://mail.google.com/mail/u/0/", page), "email");
  EXPECT_EQ(ClassifyReferrer("https://outlook.live.com/mail/", page), "email");
  EXPECT_EQ(ClassifyReferrer("https://www.example.com/blog", page), "internal");
  EXPECT_EQ(ClassifyReferrer("https://blog.example.com:8443/", page), "internal");
  EXPECT_EQ(ClassifyReferrer("https://news.site.org/a", page), "other");
  EXPECT_EQ(ClassifyReferrer("https://notgoogle.com/", page), "other");
  EXPECT_EQ(ClassifyReferrer("android-app://com.google.android.gm", page), "email");
  EXPECT_EQ(ClassifyReferrer("android-app://com.google.android.googlequicksearchbox/", page),
            "search");
  EXPECT_EQ(ClassifyReferrer("android-app://com.linkedin.android", page), "social");
  EXPECT_EQ(ClassifyReferrer("android-app://org.example.reader", page), "other");
  EXPECT_EQ(ClassifyReferrer("not a url", page), "other");
}

TEST(EnrichTest, OnlyServersEventsCarryingAVisitorsContextAreEnriched) {
  auto has = [](std::string fields) {
    model::Activity a;
    a.fields_json = std::move(fields);
    return Enricher::HasVisitorContext(a);
  };
  EXPECT_FALSE(has(R"("event":"e","properties":{"plan":"pro"})"));
  EXPECT_FALSE(has(R"("event":"e","properties":{"url":"https://a.com/?utm_source=x"})"));
  EXPECT_TRUE(has(R"("context":{"ip":"8.8.8.8"})"));
  EXPECT_TRUE(has(R"("context":{"userAgent":"Mozilla/5.0"})"));
  EXPECT_TRUE(has(R"("context":{"page":{"url":"https://a.com/"}})"));
}

TEST(EnrichTest, AddressesAreMadeAnonymous) {
  EXPECT_EQ(AnonymizeIp("203.0.113.77"), "203.0.113.0");
  EXPECT_EQ(AnonymizeIp("2001:db8:1234:5678:9abc:def0:1234:5678"), "2001:db8:1234::");
  EXPECT_EQ(AnonymizeIp("not-an-ip"), "not-an-ip");
  EXPECT_EQ(AnonymizeIp(""), "");
}

TEST(EnrichTest, CountriesComeFromDebiansDatabase) {
  auto countries = CountryLookup::Open(kDefaultGeoIpPath, kDefaultGeoIpV6Path);
  ASSERT_OK(countries);
  auto us = (*countries)->Find("8.8.8.8");
  ASSERT_TRUE(us.has_value());
  EXPECT_EQ(us->code, "US");
  EXPECT_EQ(us->name, "United States");
  auto de = (*countries)->Find("2a00:1450:4001:80b::200e");  // an IPv6 address in Germany
  ASSERT_TRUE(de.has_value());
  EXPECT_FALSE(de->code.empty());
  EXPECT_FALSE((*countries)->Find("127.0.0.1").has_value());
  EXPECT_FALSE((*countries)->Find("10.1.2.3").has_value());
  EXPECT_FALSE((*countries)->Find("garbage").has_value());
  EXPECT_THAT(CountryLookup::Open("/nonexistent.dat", kDefaultGeoIpV6Path).status(),
              testing::StatusIs(StatusCode::kNotFound));
}

json::object Fields(const model::Activity& a) {
  return json::parse("{" + a.fields_json + "}").as_object();
}

TEST(EnrichTest, ABrowsersPageViewGetsItsContextFilledAndKeepsWhatItSent) {
  auto countries = CountryLookup::Open(kDefaultGeoIpPath, kDefaultGeoIpV6Path);
  ASSERT_OK(countries);
  Enricher enricher(&Parser(), countries->get());
  model::Activity a;
  a.type = model::ActivityType::kPage;
  a.fields_json =
      R"("properties":{"title":"Pricing"},"context":{"campaign":{},"page":{"url":"https://shop.example.com/pricing?utm_source=newsletter&utm_medium=email&utm_campaign=spring%20sale","referrer":"https://www.google.com/"}})";
  enricher.Enrich(&a, {.ip = "8.8.8.8", .user_agent = kIphone, .browser = true}, {});
  json::object f = Fields(a);
  const json::object& ctx = f["context"].as_object();
  EXPECT_EQ(ctx.at("ip"), "8.8.8.8");
  EXPECT_EQ(ctx.at("location").at("country"), "United States");
  EXPECT_EQ(ctx.at("location").at("country_code"), "US");
  EXPECT_EQ(ctx.at("userAgent"), kIphone);
  EXPECT_EQ(ctx.at("os").at("name"), "iOS");
  EXPECT_EQ(ctx.at("device").at("type"), "mobile");
  EXPECT_EQ(ctx.at("device").at("manufacturer"), "Apple");
  EXPECT_EQ(ctx.at("browser").at("name"), "Mobile Safari");
  EXPECT_EQ(ctx.at("campaign"),
            json::parse(R"({"name":"spring sale","source":"newsletter","medium":"email"})"));
  EXPECT_EQ(ctx.at("referrer"),
            json::parse(R"({"type":"search","url":"https://www.google.com/"})"));
  EXPECT_EQ(f["properties"], json::parse(R"({"title":"Pricing"})"));

  // What the message says wins; the address is made anonymous when asked.
  model::Activity b;
  b.fields_json =
      R"("context":{"ip":"203.0.113.9","userAgent":"curl/8.0","os":{"name":"Mine"},"location":{"country":"Atlantis"},"campaign":{"name":"kept"},"page":{"url":"https://a.com/?utm_source=x"},"referrer":{"type":"partner"}})";
  enricher.Enrich(&b, {.ip = "8.8.8.8", .user_agent = kChromeWindows, .browser = true},
                  {.anonymize_ip = true});
  const json::object ctx2 = Fields(b)["context"].as_object();
  EXPECT_EQ(ctx2.at("ip"), "203.0.113.0");
  EXPECT_EQ(ctx2.at("userAgent"), "curl/8.0");
  EXPECT_EQ(ctx2.at("os").at("name"), "Mine");
  EXPECT_EQ(ctx2.at("location").at("country"), "Atlantis");
  EXPECT_EQ(ctx2.at("campaign"), json::parse(R"({"name":"kept"})"));
  EXPECT_EQ(ctx2.at("referrer"), json::parse(R"({"type":"partner"})"));

  // A server's request: its User-Agent is not the visitor's; no page, no referrer.
  model::Activity c;
  c.fields_json = R"("event":"x")";
  enricher.Enrich(&c, {.ip = "127.0.0.1", .user_agent = "analytics-node", .browser = false}, {});
  EXPECT_EQ(Fields(c)["context"], json::parse(R"({"ip":"127.0.0.1"})"));
}

}  // namespace
}  // namespace fairway::enrich
