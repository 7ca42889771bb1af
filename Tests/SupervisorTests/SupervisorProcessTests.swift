import ExchangerTestSupport
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Supervisor
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The supervisor as a real process running real children: restarts, backoff, crash loops,
/// stopping, process groups, zombies, orphans, reload, partial lines.
@Suite("Supervisor processes", .serialized)
struct SupervisorProcessTests {
    static func config(_ programs: String, supervisor: String = "") -> String {
        """
        [supervisor]
        identifier = test-\(UUID().uuidString.prefix(8))
        http_port = 0
        reconcile_interval = 1
        \(supervisor)

        \(programs)
        """
    }

    static func spawned(_ records: [[String: Any]], _ worker: String) -> [[String: Any]] {
        records.filter { $0.string("msg") == "process spawned" && $0.string("worker") == worker }
    }

    @Test func restartsWithExponentialBackoffNeverFasterThanASecond() async throws {
        try await withTemporaryDirectory { directory in
            let pidFile = directory.appendingPathComponent("starts")
            let supervisor = try SupervisorHarness(config: Self.config("""
                [program:crasher]
                command = \(SupervisorHarness.child) exit 3
                startsecs = 0
                environment = EXCHANGER_TEST_PID_FILE="\(pidFile.path)"
                crashloop_deaths = 100
                """), directory: directory)
            defer { Task { await supervisor.cleanUp() } }
            // Four starts: delays 1, 2, 4 s (jitter shortens by at most 20 %, never under 1 s).
            let deadline = ContinuousClock.now + .seconds(20)
            while Processes.starts(pidFile).count < 4 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            let spawns = Self.spawned(supervisor.records, "crasher")
            #expect(spawns.count >= 4)
            let times = spawns.prefix(4).compactMap { $0.string("time").flatMap(parseTime) }
            #expect(times.count == 4)
            if times.count == 4 {
                let gaps = zip(times.dropFirst(), times).map { $0 - $1 }
                #expect(gaps[0] >= 0.99 && gaps[0] < 1.6, "gaps \(gaps)")
                #expect(gaps[1] >= 1.59 && gaps[1] < 2.6, "gaps \(gaps)")
                #expect(gaps[2] >= 3.19 && gaps[2] < 4.6, "gaps \(gaps)")
            }
            let exits = supervisor.all { $0.string("msg") == "process exited unexpectedly" && $0.string("worker") == "crasher" }
            #expect(exits.allSatisfy { $0.int("status") == 3 })
            #expect(try await supervisor.stop() == 0)
        }
    }

    @Test func expectedExitCodesAreNotRestarted() async throws {
        try await withTemporaryDirectory { directory in
            let pidFile = directory.appendingPathComponent("starts")
            let supervisor = try SupervisorHarness(config: Self.config("""
                [program:done]
                command = \(SupervisorHarness.child) exit 0
                startsecs = 0
                environment = EXCHANGER_TEST_PID_FILE="\(pidFile.path)"

                [program:two-is-fine]
                command = \(SupervisorHarness.child) exit 2
                startsecs = 0
                exitcodes = 0,2
                environment = EXCHANGER_TEST_PID_FILE="\(pidFile.path)"

                [program:never]
                command = \(SupervisorHarness.child) exit 9
                startsecs = 0
                autorestart = false
                environment = EXCHANGER_TEST_PID_FILE="\(pidFile.path)"

                [program:always]
                command = \(SupervisorHarness.child) exit 0
                startsecs = 0
                autorestart = true
                environment = EXCHANGER_TEST_PID_FILE="\(pidFile.path)"
                """), directory: directory)
            defer { Task { await supervisor.cleanUp() } }
            try await supervisor.waitFor("a restart of `always`", timeout: .seconds(10)) {
                $0.string("msg") == "process spawned" && $0.string("worker") == "always" && Self.spawned(supervisor.records, "always").count >= 2
            }
            try await Task.sleep(for: .seconds(1.5))
            let records = supervisor.records
            #expect(Self.spawned(records, "done").count == 1)
            #expect(Self.spawned(records, "two-is-fine").count == 1)
            #expect(Self.spawned(records, "never").count == 1)
            #expect(Self.spawned(records, "always").count >= 2)
            #expect(try await supervisor.stop() == 0)
        }
    }

    @Test func crashLoopIsReportedFailedAndStillRetried() async throws {
        try await withTemporaryDirectory { directory in
            let port = try freePort()
            let supervisor = try SupervisorHarness(config: Self.config("""
                [program:looper]
                command = \(SupervisorHarness.child) exit 1
                startsecs = 0
                crashloop_deaths = 2
                crashloop_window = 60
                backoff_max = 2
                """, supervisor: ""), directory: directory, arguments: ["--no-broker", "--http-port", String(port)])
            defer { Task { await supervisor.cleanUp() } }
            try await supervisor.waitFor("FAILED", timeout: .seconds(15)) {
                $0.string("msg") == "restart scheduled" && $0.string("worker") == "looper" && $0.string("state") == "FAILED"
            }
            let status = try await httpGet(port: port, path: "/status")
            #expect(status.contains("\"state\" : \"FAILED\""), "\(status)")
            let metrics = try await httpGet(port: port, path: "/metrics")
            #expect(metrics.contains(#"exchanger_supervisor_crashloop_workers{program="looper"} 1"#), "\(metrics)")
            #expect(metrics.contains(#"exchanger_supervisor_restarts_total{program="looper"}"#))
            // Still retried, at the cap (2 s).
            let before = Self.spawned(supervisor.records, "looper").count
            try await Task.sleep(for: .seconds(2.5))
            #expect(Self.spawned(supervisor.records, "looper").count > before)
            let health = try await httpGet(port: port, path: "/healthz")
            #expect(health.hasPrefix("ok"))
            let ready = try await httpGet(port: port, path: "/readyz")
            #expect(ready.hasPrefix("ok"))
            #expect(try await supervisor.stop() == 0)
        }
    }

    @Test func stopEscalatesToSigkillOfTheWholeGroupAndLeavesNothing() async throws {
        try await withTemporaryDirectory { directory in
            let pidFile = directory.appendingPathComponent("starts")
            let supervisor = try SupervisorHarness(config: Self.config("""
                [program:stubborn]
                command = \(SupervisorHarness.child) ignore-term
                stopwaitsecs = 1
                environment = EXCHANGER_TEST_PID_FILE="\(pidFile.path)"

                [program:parent]
                command = \(SupervisorHarness.child) grandchild
                stopwaitsecs = 1
                environment = EXCHANGER_TEST_PID_FILE="\(pidFile.path)"
                """), directory: directory)
            defer { Task { await supervisor.cleanUp() } }
            let ready = try await supervisor.waitFor("the grandchild") { $0.int("grandchild") != nil }
            try await supervisor.waitFor("stubborn ready") { $0.string("program") == "stubborn" && $0.string("msg") == "ready" }
            let grandchild = Int32(ready.int("grandchild") ?? 0)
            let deadline = ContinuousClock.now + .seconds(10)
            while Processes.starts(pidFile).count < 3 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            let starts = Processes.starts(pidFile)
            #expect(starts.count == 3)  // stubborn, parent, grandchild
            // Each program leads its own group; the grandchild is in its parent's group.
            let leaders = starts.filter { $0.pid == $0.group }
            #expect(leaders.count == 2)
            #expect(starts.first { $0.pid == grandchild }.map { $0.group != $0.pid } == true)
            let all = starts.map(\.pid)
            #expect(all.allSatisfy(Processes.alive))

            let began = ContinuousClock.now
            #expect(try await supervisor.stop() == 0)
            let took = ContinuousClock.now - began
            #expect(took >= .seconds(1) && took < .seconds(10), "drain took \(took)")
            #expect(try await Processes.waitGone(all, timeout: .seconds(5)), "left: \(all.filter(Processes.alive))")
            let kills = supervisor.all { $0.string("msg") == "process ignored its stop signal; killing its process group" }
            #expect(kills.count == 1)
        }
    }

    @Test func reapsEveryChildIncludingOrphanedGrandchildren() async throws {
        try await withTemporaryDirectory { directory in
            let supervisor = try SupervisorHarness(config: Self.config("""
                [program:parent]
                command = \(SupervisorHarness.child) grandchild
                startsecs = 0
                """), directory: directory)
            defer { Task { await supervisor.cleanUp() } }
            let first = try await supervisor.waitFor("the grandchild") { $0.int("grandchild") != nil }
            let parentPID = Int32(first.int("pid") ?? 0)
            let grandchild = Int32(first.int("grandchild") ?? 0)
            // Kill the worker itself: its grandchild (which ignores SIGTERM) must be killed with
            // its group and reaped by the supervisor as subreaper, and the worker restarted.
            kill(parentPID, SIGKILL)
            #expect(try await Processes.waitGone([parentPID, grandchild], timeout: .seconds(5)))
            try await supervisor.waitFor("a second grandchild") { $0.int("grandchild") != nil && $0.int("pid") != Int(parentPID) }
            try await Task.sleep(for: .milliseconds(500))
            #expect(Processes.zombies(of: supervisor.process.pid).isEmpty, "zombies: \(Processes.zombies(of: supervisor.process.pid))")
            #expect(try await supervisor.stop() == 0)
        }
    }

    @Test func nothingOutlivesAKilledSupervisor() async throws {
        try await withTemporaryDirectory { directory in
            let pidFile = directory.appendingPathComponent("starts")
            let config = Self.config("""
                [program:sleeper]
                command = \(SupervisorHarness.child) sleep
                numprocs = 3
                environment = EXCHANGER_TEST_PID_FILE="\(pidFile.path)"

                [program:parent]
                command = \(SupervisorHarness.child) grandchild
                environment = EXCHANGER_TEST_PID_FILE="\(pidFile.path)"
                """)
            let first = try SupervisorHarness(config: config, directory: directory)
            defer { Task { await first.cleanUp() } }
            let ready = try await first.waitFor("the grandchild") { $0.int("grandchild") != nil }
            let grandchild = Int32(ready.int("grandchild") ?? 0)
            let deadline = ContinuousClock.now + .seconds(10)
            while Processes.starts(pidFile).count < 5 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            let children = Processes.starts(pidFile).map(\.pid).filter { $0 != grandchild }
            #expect(children.count == 4)
            #expect(children.allSatisfy { Processes.parent($0) == first.process.pid })

            first.signal(SIGKILL)
            _ = try await first.waitForExit()
            // Direct children die with the supervisor (parent-death signal).
            #expect(try await Processes.waitGone(children, timeout: .seconds(5)), "left: \(children.filter(Processes.alive))")
            // The grandchild is not a child of the supervisor; the next run with the same
            // identifier sweeps what the killed run left behind.
            if Processes.alive(grandchild) {
                try FileManager.default.removeItem(at: pidFile)
                let second = try SupervisorHarness(config: config, directory: directory)
                defer { Task { await second.cleanUp() } }
                try await second.waitFor("the sweep") { $0.string("msg") == "killed processes left behind by an earlier run" }
                #expect(try await Processes.waitGone([grandchild], timeout: .seconds(5)))
                #expect(try await second.stop() == 0)
            }
        }
    }

    @Test func reloadAppliesOnlyTheDifference() async throws {
        try await withTemporaryDirectory { directory in
            let before = Self.config("""
                [program:keep]
                command = \(SupervisorHarness.child) sleep
                numprocs = 2

                [program:gone]
                command = \(SupervisorHarness.child) sleep

                [program:changed]
                command = \(SupervisorHarness.child) sleep
                """)
            let supervisor = try SupervisorHarness(config: before, directory: directory)
            defer { Task { await supervisor.cleanUp() } }
            try await supervisor.waitFor("4 programs ready") { _ in
                supervisor.all { $0.string("msg") == "ready" }.count == 4
            }
            func pids(_ program: String) -> [Int32] {
                supervisor.all { $0.string("msg") == "ready" && $0.string("program") == program }.compactMap { $0.int("pid").map(Int32.init) }
            }
            let keep = pids("keep")
            let gone = pids("gone")
            let changed = pids("changed")
            #expect(keep.count == 2)

            let identifier = before.split(separator: "\n")[1]
            let after = """
                [supervisor]
                \(identifier)
                http_port = 0
                reconcile_interval = 1

                [program:keep]
                command = \(SupervisorHarness.child) sleep
                numprocs = 3

                [program:changed]
                command = \(SupervisorHarness.child) sleep
                environment = CHANGED="yes"

                [program:added]
                command = \(SupervisorHarness.child) sleep
                """
            try after.write(toFile: supervisor.configPath, atomically: true, encoding: .utf8)
            supervisor.signal(SIGHUP)
            try await supervisor.waitFor("the added program") { $0.string("msg") == "ready" && $0.string("program") == "added" }
            try await supervisor.waitFor("a third keep") { _ in pids("keep").count == 3 }
            try await supervisor.waitFor("changed restarted") { _ in pids("changed").count == 2 }
            #expect(keep.allSatisfy(Processes.alive), "the two running `keep` processes must not be restarted")
            #expect(try await Processes.waitGone(gone))
            #expect(try await Processes.waitGone(changed))
            #expect(Processes.alive(pids("changed")[1]))

            // A broken file changes nothing.
            try "[program:broken]\ncommand =\n".write(toFile: supervisor.configPath, atomically: true, encoding: .utf8)
            supervisor.signal(SIGHUP)
            try await supervisor.waitFor("the reload refusal") { $0.string("msg")?.hasPrefix("configuration not reloaded") == true }
            #expect(pids("keep").allSatisfy(Processes.alive))
            #expect(try await supervisor.stop() == 0)
        }
    }

    @Test func childOutputIsMultiplexedWithPartialLinesFlushed() async throws {
        try await withTemporaryDirectory { directory in
            let supervisor = try SupervisorHarness(config: Self.config("""
                [program:chatty]
                command = \(SupervisorHarness.child) lines 200
                autorestart = false
                startsecs = 0

                [program:partial]
                command = \(SupervisorHarness.child) partial 40000
                """), directory: directory)
            defer { Task { await supervisor.cleanUp() } }
            try await supervisor.waitFor("the plain line") { $0.string("msg") == "plain text line" }
            try await supervisor.waitFor("two partial pieces") { _ in
                supervisor.all { $0.string("program") == "partial" && ($0["partial"] as? Bool) == true }.count >= 2
            }
            let lines = supervisor.all { $0.string("program") == "chatty" && $0.string("msg") == "line" }
            #expect(lines.count == 200)
            #expect(lines.map { $0.int("n") ?? -1 } == Array(0..<200))
            #expect(lines.allSatisfy { $0.string("stream") == "stdout" && $0.string("jobId") == "job-1" && $0.int("pid") != nil && $0.int("instance") == 0 })
            let pieces = supervisor.all { $0.string("program") == "partial" && ($0["partial"] as? Bool) == true }
            #expect(pieces.allSatisfy { ($0.string("msg")?.utf8.count ?? 0) == 16 * 1024 })
            #expect(try await supervisor.stop() == 0)
            // The rest of the 40,000 bytes is flushed when the pipe closes.
            let rest = supervisor.all { $0.string("program") == "partial" && $0["partial"] == nil && $0.string("msg")?.hasPrefix("xxx") == true }
            #expect(rest.first?.string("msg")?.utf8.count == 40000 - 2 * 16 * 1024)
        }
    }

    /// Least privilege: a program gets the settings it can need, not another program's secrets
    /// nor the supervisor's unrelated variables; its own `environment =` line always applies.
    @Test func programsGetOnlyTheEnvironmentTheyNeed() async throws {
        try await withTemporaryDirectory { directory in
            let supervisor = try SupervisorHarness(config: Self.config("""
                [program:printer]
                command = /usr/bin/env
                environment = OWN_SETTING=yes
                autorestart = false
                startsecs = 0
                """), directory: directory, environment: [
                    "EXCHANGER_API_TOKENS": "api-secret", "EXCHANGER_NUTRIENT_API_TOKEN": "engine-secret",
                    "EXCHANGER_CASE_DATABASE_URL": "postgres://writer:case-secret@db/{database}", "OTHER_APP_PASSWORD": "other-secret",
                    "EXCHANGER_LOG_LEVEL": "info", "AWS_REGION": "eu-west-1", "PGCONNECT_TIMEOUT": "5",
                ])
            defer { Task { await supervisor.cleanUp() } }
            try await supervisor.waitFor("the environment printed") { $0.string("program") == "printer" && $0.string("msg")?.hasPrefix("OWN_SETTING=") == true }
            try await Task.sleep(for: .milliseconds(300))
            let printed = supervisor.all { $0.string("program") == "printer" }.compactMap { $0.string("msg") }
            for secret in ["api-secret", "engine-secret", "case-secret", "other-secret"] {
                #expect(!printed.contains { $0.contains(secret) }, "\(secret) is not passed to a program that does not use it")
            }
            for setting in ["EXCHANGER_LOG_LEVEL=info", "AWS_REGION=eu-west-1", "PGCONNECT_TIMEOUT=5", "OWN_SETTING=yes"] {
                #expect(printed.contains(setting), "\(setting) is passed")
            }
            #expect(printed.contains { $0.hasPrefix("PATH=") })
            #expect(try await supervisor.stop() == 0)
        }
        // The secrets still reach the executables that use them.
        let policy = ProgramEnvironment(environment: [:])
        let all = ["EXCHANGER_API_TOKENS": "a", "EXCHANGER_NUTRIENT_API_TOKEN": "n", "EXCHANGER_CASE_DATABASE_URL": "c", "EXCHANGER_API_TOKEN": "t"]
        #expect(Set(policy.filter(all, executable: "/opt/exchanger/bin/exchanger-orchestrator").keys) == ["EXCHANGER_API_TOKENS", "EXCHANGER_CASE_DATABASE_URL"])
        #expect(Set(policy.filter(all, executable: "exchanger-uploader").keys) == ["EXCHANGER_NUTRIENT_API_TOKEN"])
        #expect(Set(policy.filter(all, executable: "exchanger-search-text").keys) == ["EXCHANGER_CASE_DATABASE_URL"])
        #expect(policy.filter(all, executable: "exchanger-s3-copy").isEmpty)
        #expect(ProgramEnvironment(environment: ["EXCHANGER_SUPERVISOR_PASS_ENV": "OTHER, EXCHANGER_API_TOKEN"])
            .filter(["OTHER": "1", "EXCHANGER_API_TOKEN": "t"], executable: "exchanger-dlq").count == 2)
    }

    @Test func perProgramLogFilesGetTheLinesAndReopenOnSIGUSR2() async throws {
        try await withTemporaryDirectory { directory in
            let logs = directory.appendingPathComponent("logs")
            let supervisor = try SupervisorHarness(config: Self.config("""
                [program:chatty]
                command = \(SupervisorHarness.child) lines 50
                startsecs = 0
                autorestart = true
                backoff_max = 1
                stdout_logfile = %(here)s/logs/%(program_name)s.log
                stdout_logfile_maxbytes = 0
                """, supervisor: "logfile = %(here)s/logs/all.log"), directory: directory)
            defer { Task { await supervisor.cleanUp() } }
            let programLog = logs.appendingPathComponent("chatty.log")
            let combinedLog = logs.appendingPathComponent("all.log")
            func lines(_ file: URL) -> [String] {
                ((try? String(contentsOf: file, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
            }
            try await SupervisorDeploymentTests.waitFor("the program's file") { lines(programLog).count >= 51 }
            #expect(lines(programLog).allSatisfy { $0.hasPrefix(#"{"program":"chatty","instance":0,"pid":"#) })
            #expect(lines(combinedLog).contains { $0.contains(#""msg":"supervisor started""#) })
            #expect(lines(combinedLog).contains { $0.contains(#""program":"chatty""#) })

            // External rotation: move the files away, SIGUSR2, and new lines go to fresh files.
            let moved = logs.appendingPathComponent("chatty.log.old")
            try FileManager.default.moveItem(at: programLog, to: moved)
            let movedCount = lines(moved).count
            supervisor.signal(SIGUSR2)
            try await supervisor.waitFor("the reopen") { $0.string("msg") == "log files reopened" }
            try await SupervisorDeploymentTests.waitFor("lines in the fresh file") { lines(programLog).count >= 51 }
            // The moved file may still get the lines written before the reopen, then no more.
            try await Task.sleep(for: .seconds(1.5))
            let settled = lines(moved).count
            try await Task.sleep(for: .seconds(1.5))
            #expect(lines(moved).count == settled)
            #expect(settled >= movedCount)
            #expect(try await supervisor.stop() == 0)
        }
    }

    @Test func aMissingExecutableIsRetriedAndReported() async throws {
        try await withTemporaryDirectory { directory in
            let supervisor = try SupervisorHarness(config: Self.config("""
                [program:missing]
                command = /nonexistent/exchanger-nothing --flag
                """), directory: directory)
            defer { Task { await supervisor.cleanUp() } }
            try await supervisor.waitFor("the spawn error") {
                $0.string("msg") == "cannot spawn process" && ($0.string("error") ?? "").contains("/nonexistent/exchanger-nothing")
            }
            try await supervisor.waitFor("a retry") { _ in
                supervisor.all { $0.string("msg") == "cannot spawn process" }.count >= 2
            }
            #expect(try await supervisor.stop() == 0)
        }
    }
}

func parseTime(_ text: String) -> Double? {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return formatter.date(from: text)?.timeIntervalSince1970
}

func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            Glibc.bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
        }
    }
    guard bound else { throw TestSetupError(message: "no free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A GET over loopback; the body, whatever the status.
func httpGet(port: Int, path: String) async throws -> String {
    let url = URL(string: "http://127.0.0.1:\(port)\(path)")
    guard let url else { throw TestSetupError(message: "bad url") }
    let deadline = ContinuousClock.now + .seconds(10)
    while true {
        do {
            let (data, _) = try await URLSession.shared.data(from: url)
            return String(decoding: data, as: UTF8.self)
        } catch {
            guard ContinuousClock.now < deadline else { throw error }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}
