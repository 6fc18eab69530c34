#include "dispatch/transport.h"

#include <curl/curl.h>

#include <mutex>
#include <unordered_set>

#include "dispatch/curl_transfer.h"

namespace fairway::dispatch {
namespace {

std::once_flag curl_init_once;

TransferError ErrorOf(CURLcode rc) {
  switch (rc) {
    case CURLE_OK:
      return TransferError::kNone;
    case CURLE_OPERATION_TIMEDOUT:
      return TransferError::kTimeout;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
      return TransferError::kInvalidRequest;
    default:
      return TransferError::kOther;
  }
}

}  // namespace

struct Transport::Impl {
  const DeliveryDispatcherOptions* options = nullptr;
  CURLM* multi = nullptr;
  std::unordered_set<Transfer*> live;  // transfers added to `multi`, owned here

  // Creates the easy handle of (`tenant`, `row`), lets `set_up` add the protocol's options and
  // adds it to `multi`.
  template <typename SetUp>
  Status Start(Tenant* tenant, Row* row, int64_t now_ms, SetUp set_up) {
    auto x = std::make_unique<Transfer>();
    x->tenant = tenant;
    x->row = row;
    x->started_ms = now_ms;
    x->easy = curl_easy_init();
    if (x->easy == nullptr) return Internal("could not create a transfer (out of memory)");
    CURL* e = x->easy;
    curl_easy_setopt(e, CURLOPT_PRIVATE, x.get());
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(options->request_timeout.count()));
    FAIRWAY_RETURN_IF_ERROR(set_up(x.get()));
    if (curl_multi_add_handle(multi, e) != CURLM_OK) return Internal("could not start a transfer");
    live.insert(x.release());  // freed by Collect or AbortAll
    return Status::Ok();
  }
};

Transport::Transport(const DeliveryDispatcherOptions* options) : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
  std::call_once(curl_init_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  impl_->multi = curl_multi_init();
}

Transport::~Transport() {
  if (impl_->multi != nullptr) curl_multi_cleanup(impl_->multi);
}

bool Transport::ok() const { return impl_->multi != nullptr; }

Status Transport::StartWebhook(Tenant* tenant, Row* row, const Delivery& d,
                               const DestinationFilter* filter,
                               const std::optional<std::string>& secret, int64_t now_ms) {
  return impl_->Start(tenant, row, now_ms,
                      [&](Transfer* x) { return SetUpWebhook(x, d, filter, secret, now_ms); });
}

Status Transport::StartEmail(Tenant* tenant, Row* row, const Delivery& d, int64_t now_ms) {
  return impl_->Start(tenant, row, now_ms,
                      [&](Transfer* x) { return SetUpEmail(x, d, *impl_->options, now_ms); });
}

void Transport::Perform() {
  int running_handles = 0;
  curl_multi_perform(impl_->multi, &running_handles);
}

std::vector<Completion> Transport::Collect() {
  std::vector<Completion> done;
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(impl_->multi, &left)) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL* e = msg->easy_handle;
    CURLcode rc = msg->data.result;
    Transfer* raw = nullptr;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, &raw);
    curl_multi_remove_handle(impl_->multi, e);
    impl_->live.erase(raw);
    std::unique_ptr<Transfer> x(raw);
    Completion c{x->tenant, x->row, {}};
    TransferResult& r = c.result;
    r.error = ErrorOf(rc);
    r.error_text = curl_easy_strerror(rc);
    if (rc != CURLE_OK) r.detail = x->errbuf;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r.code);
    r.retry_after_s = x->retry_after_s;
    r.refusal = std::move(x->refusal);
    r.attempted = x->attempted;
    r.started_ms = x->started_ms;
    done.push_back(std::move(c));
  }
  return done;
}

void Transport::Poll(int timeout_ms) {
  curl_multi_poll(impl_->multi, nullptr, 0, timeout_ms, nullptr);
}

void Transport::Wakeup() { curl_multi_wakeup(impl_->multi); }

std::vector<std::pair<Tenant*, Row*>> Transport::AbortAll() {
  std::vector<std::pair<Tenant*, Row*>> aborted;
  for (Transfer* x : impl_->live) {
    curl_multi_remove_handle(impl_->multi, x->easy);
    aborted.emplace_back(x->tenant, x->row);
    delete x;
  }
  impl_->live.clear();
  return aborted;
}

}  // namespace fairway::dispatch
