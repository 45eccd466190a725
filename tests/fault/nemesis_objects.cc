#include "fault/nemesis_objects.h"

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include "checkers/linearizability.h"
#include "fault/nemesis_keys.h"
#include "latchkey/client.h"
#include "latchkey/objects.h"
#include "testlib/server_process.h"

namespace latchkey::testing {

using namespace std::chrono_literals;

void NemesisWatchers::Start(int count, const std::string& endpoints, const std::string& dir,
                            uint64_t seed) {
  for (int k = 0; k < count; ++k) {
    const int64_t process = 101 + k;
    files_.push_back(dir + "/history-watch-" + std::to_string(process) + ".jsonl");
    const std::string cwd = dir + "/watcher-" + std::to_string(process);
    std::filesystem::create_directories(cwd);
    pids_.push_back(SpawnCommand(
        {NEMESIS_WATCHER_BIN, endpoints, nemesis::kObjPrefix, std::to_string(process),
         files_.back(), std::to_string(seed * 1000 + static_cast<uint64_t>(process)), "1"},
        cwd + ".log", cwd));
  }
}

bool NemesisWatchers::WaitCaughtUp(uint64_t revision, std::chrono::milliseconds deadline,
                                   std::string* why) {
  // Reads each history as it grows (from where the last poll stopped).
  std::vector<std::streamoff> offsets(files_.size(), 0);
  std::vector<uint64_t> reached(files_.size(), 0);
  auto caught_up = [&] {
    bool all = true;
    for (size_t i = 0; i < files_.size(); ++i) {
      std::ifstream f(files_[i]);
      f.seekg(offsets[i]);
      std::string line;
      while (std::getline(f, line)) {
        if (f.eof()) break;  // a line still being written: read it next time
        offsets[i] = f.tellg();
        auto e = checkers::FromJson(line);
        if (e && e->op == "event") reached[i] = std::max(reached[i], e->revision);
      }
      all = all && reached[i] >= revision;
    }
    return all;
  };
  if (WaitFor(caught_up, deadline)) return true;
  *why = "watchers did not reach revision " + std::to_string(revision) + ":";
  for (size_t i = 0; i < files_.size(); ++i) {
    *why += " watcher " + std::to_string(101 + i) + " at " + std::to_string(reached[i]);
  }
  return false;
}

void NemesisWatchers::Reap(std::vector<std::string>* deaths) {
  for (size_t i = 0; i < pids_.size(); ++i) {
    const std::optional<std::string> how = ReapIfExited(pids_[i]);
    if (!how) continue;
    deaths->push_back("watcher " + std::to_string(101 + i) + " " + *how);
    pids_[i] = -1;
  }
}

void NemesisWatchers::StopAll(std::vector<std::string>* deaths) {
  for (pid_t pid : pids_) {
    if (pid > 0) kill(pid, SIGTERM);
  }
  for (size_t i = 0; i < pids_.size(); ++i) {
    if (pids_[i] <= 0) continue;
    const std::optional<std::string> bad = AwaitCleanExit(pids_[i], 15s);
    if (bad && deaths) deaths->push_back("watcher " + std::to_string(101 + i) + " " + *bad);
    pids_[i] = -1;
  }
}

std::vector<checkers::WatchStream> NemesisWatchers::Streams(int64_t base_ns) const {
  std::vector<checkers::WatchStream> out;
  for (size_t i = 0; i < files_.size(); ++i) {
    checkers::WatchStream s;
    s.watcher = 101 + static_cast<int64_t>(i);
    s.from_revision = 1;
    s.events = checkers::ReadHistory(files_[i]);
    for (auto& e : s.events) e.time -= base_ns;
    out.push_back(std::move(s));
  }
  return out;
}

std::map<std::string, checkers::FinalObject> ReadFinalObjects(const std::string& endpoints,
                                                              std::chrono::milliseconds deadline) {
  std::map<std::string, checkers::FinalObject> out;
  ClientOptions o;
  o.endpoint = endpoints;
  o.client_name = "nemesis-final-objects";
  o.connect_timeout = 2s;
  WaitFor(
      [&] {
        auto c = Client::Connect(o);
        if (!c.ok()) return false;
        Objects objects(**c);
        out.clear();
        for (int k = 0; k < nemesis::kObjKeys; ++k) {
          const std::string key = nemesis::kObjPrefix + std::to_string(k);
          auto v = objects.Get(key);
          if (!v.ok()) return false;
          out[key] = {v->value, v->mod_revision};
        }
        (void)(*c)->Close();
        return true;
      },
      deadline);
  if (out.size() != static_cast<size_t>(nemesis::kObjKeys)) out.clear();
  return out;
}

std::vector<checkers::CheckResult> CheckObjects(
    const std::vector<checkers::Operation>& ops, const std::vector<checkers::WatchStream>& streams,
    const std::map<std::string, checkers::FinalObject>& final_state) {
  std::vector<checkers::CheckResult> out;
  checkers::LinearizabilityOptions lin;
  lin.read_op = "get";
  lin.write_op = "put";
  lin.cas_op = "txn-cas";
  for (int k = 0; k < nemesis::kObjKeys; ++k) {
    out.push_back(
        checkers::CheckRegisterLinearizable(ops, nemesis::kObjPrefix + std::to_string(k), lin));
  }
  checkers::WatchCheckOptions w;
  w.prefix = nemesis::kObjPrefix;
  w.final_state = final_state;
  out.push_back(checkers::CheckWatches(ops, streams, w));
  if (final_state.empty()) out.back().violations.push_back("could not read the final objects");
  return out;
}

}  // namespace latchkey::testing
