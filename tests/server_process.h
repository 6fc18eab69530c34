#pragma once
// Runs the real `fairway serve` binary as a child process for end-to-end tests: a temporary
// data directory, an ephemeral port (read from the "READY <port>" line it prints), SIGKILL or
// SIGTERM on demand, and always stopped by the destructor (a testing::ChildProcess).

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "testing/child_process.h"

namespace fairway::e2e {

class ServerProcess {
 public:
  ServerProcess(std::string binary, std::string data_dir, std::string admin_token)
      : binary_(std::move(binary)),
        data_dir_(std::move(data_dir)),
        token_(std::move(admin_token)) {}
  ~ServerProcess() { Kill(SIGKILL); }

  // Sets an environment variable of the server (e.g. a FAIRWAY_* config override). Before Start.
  void SetEnv(std::string name, std::string value) {
    env_.emplace_back(std::move(name), std::move(value));
  }
  // Puts the server's log on the Kafka cluster at `brokers`, whose topics the test creates (the
  // mock cluster has no CreateTopics). Before Start.
  void UseKafka(const std::string& brokers) {
    SetEnv("FAIRWAY_LOG_BACKEND", "kafka");
    SetEnv("FAIRWAY_KAFKA_BROKERS", brokers);
    SetEnv("FAIRWAY_KAFKA_CREATE_TOPICS", "false");
  }
  // Appends the server's log (stderr) to `path` instead of the test's stderr. Before Start.
  void SetLogFile(std::string path) { log_file_ = std::move(path); }

  // Starts the server and waits (on its output, not a timer) until it is listening.
  void Start() {
    testing::ChildProcessOptions options;
    options.env.emplace_back("FAIRWAY_ADMIN_TOKEN", token_);
    options.env.insert(options.env.end(), env_.begin(), env_.end());
    options.stderr_path = log_file_;
    options.die_with_test = false;  // tests restart servers from their own threads
    child_.emplace(
        binary_,
        std::vector<std::string>{"serve", "--data-dir", data_dir_, "--listen", "127.0.0.1:0"},
        options);
    port_ = 0;
    std::string line;
    while (child_->ReadLine(&line)) {
      if (sscanf(line.c_str(), "READY %d", &port_) == 1) break;
    }
    // The server prints nothing more to stdout after READY: close our end, so later writes by
    // the child get EPIPE and never block.
    child_->CloseStdout();
    if (port_ == 0) throw std::runtime_error("server did not start: " + child_->error());
  }

  void Kill(int sig) {
    if (child_) child_->Kill(sig);
    child_.reset();
  }

  // Sends `sig` only: SIGSTOP freezes the server (a node that stops answering), SIGCONT wakes it.
  void Signal(int sig) {
    if (child_) child_->Signal(sig);
  }

  // Sends SIGTERM and waits up to `timeout` for the server to exit; false (and SIGKILL) if it
  // does not.
  bool Terminate(std::chrono::milliseconds timeout) {
    if (!child_) return true;
    bool exited = child_->Terminate(timeout);
    child_.reset();
    return exited;
  }

  // True while the server runs (it has not exited or been killed).
  bool Alive() { return child_ && child_->Alive(); }

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  std::string binary_, data_dir_, token_;
  std::vector<std::pair<std::string, std::string>> env_;
  std::string log_file_;
  std::optional<testing::ChildProcess> child_;
  int port_ = 0;
};

}  // namespace fairway::e2e
