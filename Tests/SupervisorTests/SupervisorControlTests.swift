import ExchangerTestSupport
import NIOCore
import Supervisor
import WorkerRuntime
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `exchanger ctl` against a real supervisor: supervisorctl's verbs over the supervisor's HTTP port.
@Suite("exchanger ctl against a running supervisor")
struct SupervisorControlTests {
    static func config() -> String {
        SupervisorProcessTests.config("""
            [program:sleeper]
            command = \(SupervisorHarness.child) sleep
            startsecs = 0

            [program:worker]
            command = \(SupervisorHarness.child) sleep
            scope = per-exchange
            """)
    }

    /// `exchanger ARGUMENTS` with standard error merged into the output.
    static func exchanger(_ arguments: [String], environment: [String: String]) async throws -> (status: Int32, output: String) {
        try await runExchanger(["-c", #""$0" "$@" 2>&1"#, TestEnvironment.exchanger] + arguments, environment: environment, executable: "/bin/sh")
    }

    /// The pid `exchanger ctl status PROGRAM` prints, when one runs.
    static func pid(_ output: String) -> Int32? {
        output.split(separator: " ").firstIndex(of: "pid").flatMap { index in
            let words = output.split(separator: " ")
            return index + 1 < words.count ? Int32(words[index + 1].trimmingCharacters(in: .whitespacesAndNewlines.union(.punctuationCharacters))) : nil
        }
    }

    @Test("on loopback without a token: stop keeps it stopped across deployment passes, start and restart give new processes, tail shows its lines, unknown and per-exchange programs are refused")
    func verbsOnLoopback() async throws {
        try await withTemporaryDirectory { directory in
            let port = try freePort()
            let supervisor = try SupervisorHarness(
                config: Self.config(), directory: directory, arguments: ["--no-broker", "--http-port", String(port)])
            defer { Task { await supervisor.cleanUp() } }
            let url = ["EXCHANGER_SUPERVISOR_URL": "http://127.0.0.1:\(port)"]
            try await supervisor.waitFor("sleeper ready") { $0.string("msg") == "ready" && $0.string("program") == "sleeper" }

            let (statusCode, status) = try await runExchanger(["ctl", "status", "sleeper"], environment: url)
            #expect(statusCode == 0 && status.contains("sleeper:0") && status.contains("RUNNING"), "\(status)")
            let first = try #require(Self.pid(status), "\(status)")

            let (stopCode, stopped) = try await runExchanger(["ctl", "stop", "sleeper"], environment: url)
            #expect(stopCode == 0 && stopped.contains("STOPPED"), "\(stopped)")
            #expect(try await Processes.waitGone([first]), "the stopped process is gone")
            // Three deployment passes later (reconcile_interval = 1) it is still stopped.
            try await Task.sleep(for: .seconds(3))
            let (_, still) = try await runExchanger(["ctl", "status", "sleeper"], environment: url)
            #expect(still.contains("STOPPED") && Self.pid(still) == nil, "\(still)")

            let (startCode, started) = try await runExchanger(["ctl", "start", "sleeper"], environment: url)
            #expect(startCode == 0 && started.contains("RUNNING"), "\(started)")
            let second = try #require(Self.pid(started), "\(started)")
            #expect(second != first)
            let (restartCode, restarted) = try await runExchanger(["ctl", "restart", "sleeper"], environment: url)
            #expect(restartCode == 0 && restarted.contains("RUNNING"), "\(restarted)")
            let third = try #require(Self.pid(restarted), "\(restarted)")
            #expect(third != second && Processes.alive(third))
            #expect(try await Processes.waitGone([second]))

            // The program's recent lines: the ready line of each of its three processes.
            let (tailCode, tail) = try await runExchanger(["ctl", "tail", "sleeper", "--bytes", "4000"], environment: url)
            #expect(tailCode == 0, "\(tail)")
            for pid in [first, second, third] {
                #expect(tail.contains(#""pid":\#(pid)"#) && tail.contains(#""msg":"ready""#), "\(tail)")
            }

            let unknown = try await Self.exchanger(["ctl", "stop", "nope"], environment: url)
            #expect(unknown.status == 1 && unknown.output.contains("404") && unknown.output.contains("global programs: sleeper"), "\(unknown)")
            let perExchange = try await Self.exchanger(["ctl", "restart", "worker"], environment: url)
            #expect(perExchange.status == 1 && perExchange.output.contains("exchanger scale"), "\(perExchange)")
            let refusals = supervisor.records.filter { $0.string("msg") == "control request" }
            #expect(refusals.count == 3, "stop, start and restart of sleeper were logged; the refused ones were not: \(refusals)")
            #expect(try await supervisor.stop() == 0)
        }
    }

    @Test("with EXCHANGER_SUPERVISOR_CONTROL_TOKEN set: no token or a wrong one is refused (401), the token works, and no program sees it")
    func tokenRequired() async throws {
        try await withTemporaryDirectory { directory in
            let port = try freePort()
            let token = UUID().uuidString
            let supervisor = try SupervisorHarness(
                config: Self.config(), directory: directory, arguments: ["--no-broker", "--http-port", String(port)],
                environment: ["EXCHANGER_SUPERVISOR_CONTROL_TOKEN": token])
            defer { Task { await supervisor.cleanUp() } }
            try await supervisor.waitFor("sleeper ready") { $0.string("msg") == "ready" && $0.string("program") == "sleeper" }
            var client = ["EXCHANGER_SUPERVISOR_URL": "http://127.0.0.1:\(port)", "EXCHANGER_SUPERVISOR_CONTROL_TOKEN": ""]
            let anonymous = try await Self.exchanger(["ctl", "restart", "sleeper"], environment: client)
            #expect(anonymous.status == 1 && anonymous.output.contains("401"), "\(anonymous)")
            client["EXCHANGER_SUPERVISOR_CONTROL_TOKEN"] = "wrong"
            let wrong = try await Self.exchanger(["ctl", "tail", "sleeper"], environment: client)
            #expect(wrong.status == 1 && wrong.output.contains("401"), "\(wrong)")
            let tokenFile = directory.appendingPathComponent("token").path
            try (token + "\n").write(toFile: tokenFile, atomically: true, encoding: .utf8)
            client["EXCHANGER_SUPERVISOR_CONTROL_TOKEN"] = ""
            let (code, output) = try await runExchanger(["ctl", "restart", "sleeper", "--token-file", tokenFile], environment: client)
            #expect(code == 0 && output.contains("RUNNING"), "\(output)")
            // The child's environment has no trace of the token.
            let pid = try #require(Self.pid(output))
            let childEnvironment = (try? String(contentsOfFile: "/proc/\(pid)/environ", encoding: .utf8)) ?? ""
            #expect(!childEnvironment.isEmpty && !childEnvironment.contains(token))
            #expect(try await supervisor.stop() == 0)
        }
    }
}

/// The pieces of `exchanger ctl` that need no process: the output ring and the loopback rule.
@Suite("RecentLogs and the loopback rule")
struct RecentLogsTests {
    @Test("offsets count every byte ever written: a poll from the last end gets exactly what came after; a reader that fell behind is told")
    func offsets() throws {
        let logs = RecentLogs(capacity: 1024)
        #expect(logs.read("a") == nil)
        logs.append("a", Array("one\ntwo\n".utf8))
        let first = try #require(logs.read("a"))
        #expect(first.start == 0 && first.end == 8 && !first.skipped && first.bytes == Array("one\ntwo\n".utf8))
        logs.append("a", Array("three\n".utf8))
        logs.append("b", Array("other\n".utf8))
        let next = try #require(logs.read("a", from: first.end))
        #expect(next.start == 8 && next.end == 14 && next.bytes == Array("three\n".utf8) && !next.skipped)
        #expect(try #require(logs.read("a", from: next.end)).bytes.isEmpty)
        // The last bytes start at a line.
        #expect(try #require(logs.read("a", last: 7)).bytes == Array("three\n".utf8))

        // 3000 lines of 10 bytes: only the last 1024 bytes or so are kept; a reader at 0 learns it.
        for index in 0..<3000 { logs.append("a", Array(String(format: "line %04d\n", index).utf8)) }
        let behind = try #require(logs.read("a", from: 0))
        #expect(behind.skipped && behind.start > 0 && behind.end == 14 + 30_000)
        #expect(behind.bytes.count <= 1024 && behind.bytes.suffix(10) == Array("line 2999\n".utf8))
        #expect(try #require(logs.read("b")).bytes == Array("other\n".utf8), "each program has its own")
    }

    @Test("loopback peers: 127.0.0.0/8, ::1 and mapped 127.x; anything else is not", arguments: [
        ("127.0.0.1", true), ("127.1.2.3", true), ("::1", true), ("::ffff:127.0.0.1", true),
        ("10.0.0.5", false), ("192.168.1.1", false), ("::ffff:10.0.0.5", false), ("fe80::1", false),
    ])
    func loopback(address: String, expected: Bool) throws {
        #expect(HTTPRouteRequest.isLoopback(try SocketAddress(ipAddress: address, port: 9100)) == expected)
        #expect(!HTTPRouteRequest.isLoopback(nil))
    }
}
