#pragma once
// Runs a test peer (a script in tests/peers/) as a child process: starts it, reads the port it
// prints as its first stdout line, and kills and reaps it in the destructor. The child also dies
// with the test process (PR_SET_PDEATHSIG), so a crashed test leaves no peer behind.

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace fairway::dispatch::testing {

class PeerProcess {
 public:
  // Starts `program` with `args` (argv[0] is `program`). Check ok() / error() afterwards.
  PeerProcess(const std::string& program, const std::vector<std::string>& args) {
    std::vector<std::string> storage = {program};
    storage.insert(storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : storage) argv.push_back(a.data());
    argv.push_back(nullptr);
    int fds[2];
    if (pipe(fds) != 0) {
      error_ = "pipe failed";
      return;
    }
    pid_t parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {
      // Only async-signal-safe calls between fork and exec.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(126);
      dup2(fds[1], STDOUT_FILENO);
      close(fds[0]);
      close(fds[1]);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(fds[1]);
    if (pid_ < 0) {
      close(fds[0]);
      error_ = "fork failed";
      return;
    }
    // The peer prints its port once it listens; EOF means it died first.
    FILE* out = fdopen(fds[0], "r");
    char line[64];
    if (fgets(line, sizeof line, out) == nullptr || sscanf(line, "%d", &port_) != 1) {
      port_ = 0;
      error_ = "peer " + (storage.size() > 1 ? storage[1] : program) +
               " exited before printing its port";
    }
    // Peers print nothing else on stdout, so closing our end cannot make them block.
    fclose(out);
  }

  ~PeerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
  }
  PeerProcess(const PeerProcess&) = delete;
  PeerProcess& operator=(const PeerProcess&) = delete;

  bool ok() const { return port_ > 0; }
  const std::string& error() const { return error_; }
  int port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string error_;
};

// The records a peer wrote to its record file: one JSON object per line.
inline std::vector<nlohmann::json> ReadJsonLines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

}  // namespace fairway::dispatch::testing
