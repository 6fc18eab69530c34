#pragma once
// Runs the real `fairway serve` binary as a child process for end-to-end tests: a temporary
// data directory, an ephemeral port (read from the "READY <port>" line it prints), SIGKILL or
// SIGTERM on demand, and always stopped by the destructor.

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

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
  // Appends the server's log (stderr) to `path` instead of the test's stderr. Before Start.
  void SetLogFile(std::string path) { log_file_ = std::move(path); }

  // Starts the server and waits (on its output, not a timer) until it is listening.
  void Start() {
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], STDOUT_FILENO);
      close(fds[0]);
      close(fds[1]);
      setenv("FAIRWAY_ADMIN_TOKEN", token_.c_str(), 1);
      for (const auto& [name, value] : env_) setenv(name.c_str(), value.c_str(), 1);
      if (!log_file_.empty()) {
        int log = open(log_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (log >= 0) dup2(log, STDERR_FILENO);
      }
      execl(binary_.c_str(), binary_.c_str(), "serve", "--data-dir", data_dir_.c_str(), "--listen",
            "127.0.0.1:0", static_cast<char*>(nullptr));
      _exit(127);
    }
    close(fds[1]);
    FILE* out = fdopen(fds[0], "r");
    char line[512];
    port_ = 0;
    while (fgets(line, sizeof line, out)) {
      if (sscanf(line, "READY %d", &port_) == 1) break;
    }
    // Keep draining output in the background is unnecessary: the server prints nothing more to
    // stdout after READY. Close our end; later writes by the child would get EPIPE, never block.
    fclose(out);
    if (port_ == 0) throw std::runtime_error("server did not start");
  }

  void Kill(int sig) {
    if (pid_ <= 0) return;
    kill(pid_, sig);
    int status;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  // Sends SIGTERM and waits up to `timeout` for the server to exit; false (and SIGKILL) if it
  // does not.
  bool Terminate(std::chrono::milliseconds timeout) {
    if (pid_ <= 0) return true;
    kill(pid_, SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    int status;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        Kill(SIGKILL);
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // no exit notification
    }
    pid_ = -1;
    return true;
  }

  // True while the server runs (it has not exited or been killed).
  bool Alive() {
    if (pid_ <= 0) return false;
    int status;
    if (waitpid(pid_, &status, WNOHANG) == 0) return true;
    pid_ = -1;
    return false;
  }

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  std::string binary_, data_dir_, token_;
  std::vector<std::pair<std::string, std::string>> env_;
  std::string log_file_;
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace fairway::e2e
