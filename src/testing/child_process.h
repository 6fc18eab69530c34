#pragma once
// ChildProcess: a program run by a test (a peer server, the mock Kafka cluster, `fairway serve`),
// with a pipe to its stdin and one from its stdout. By default it dies with the test process
// (PR_SET_PDEATHSIG), so a crashed test leaves nothing behind; the destructor kills (SIGKILL) and
// reaps it.

#include <sys/types.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace fairway::testing {

struct ChildProcessOptions {
  // Environment variables set for the child on top of the test's own (a later entry wins).
  std::vector<std::pair<std::string, std::string>> env;
  // Appends the child's stderr to this file instead of sharing the test's (empty: share it).
  std::string stderr_path;
  // Kills the child if the test dies (PR_SET_PDEATHSIG). That fires when the *thread* that
  // started the child exits, so a child started from a short-lived thread needs it off.
  bool die_with_test = true;
};

class ChildProcess {
 public:
  // Starts `program` with `args` (argv[0] is `program`). Check started() / error() afterwards.
  ChildProcess(const std::string& program, const std::vector<std::string>& args,
               const ChildProcessOptions& options = {});
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  bool started() const { return started_; }
  const std::string& error() const { return error_; }

  // Reads one line of the child's stdout, without its newline; false at end of file (the child
  // exited or closed its stdout).
  bool ReadLine(std::string* line);
  // Writes `line` and a newline to the child's stdin; false if the child is gone.
  bool WriteLine(const std::string& line);
  // Stops reading the child's stdout (for a child that prints nothing more: its later writes
  // fail with EPIPE instead of blocking).
  void CloseStdout();

  // Sends `sig` and reaps the child: it is gone when this returns. Nothing if it already is.
  void Kill(int sig);
  // Sends `sig` only (SIGSTOP, SIGCONT).
  void Signal(int sig);
  // Sends SIGTERM and waits up to `timeout` for the child to exit; false (and SIGKILL) if it
  // does not.
  bool Terminate(std::chrono::milliseconds timeout);
  // True while the child runs (it has not exited or been killed).
  bool Alive();

 private:
  bool started_ = false;
  pid_t pid_ = -1;
  FILE* to_child_ = nullptr;
  FILE* from_child_ = nullptr;
  std::string error_;
};

}  // namespace fairway::testing
