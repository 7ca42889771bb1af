import ExchangerTestSupport
import Foundation
import ProcessSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `exchanger run` starts the supervisor with `--stop-when-orphaned`: if `exchanger run` itself is
/// killed, the fleet drains instead of running on unwatched.
@Suite("a supervisor started with --stop-when-orphaned")
struct OrphanedSupervisorTests {
    @Test("drains and exits, with its program, when the process that started it dies")
    func stopsWhenOrphaned() async throws {
        try await withTemporaryDirectory { directory in
            let config = directory.appendingPathComponent("supervisor.conf").path
            try """
                [supervisor]
                http_port = 0
                [program:sleeper]
                command = /bin/sleep 1000
                scope = global
                stopwaitsecs = 5
                """.write(toFile: config, atomically: true, encoding: .utf8)
            // The shell starts the supervisor in the background, prints its pid and exits: the
            // supervisor loses its parent.
            let shell = try ChildProcess(
                executable: "/bin/sh",
                arguments: ["-c", #""$0" --config "$1" --no-broker --stop-when-orphaned >"$2" 2>&1 & echo $!; sleep 2"#,
                    TestEnvironment.executable("exchanger-supervisor"), config, directory.appendingPathComponent("out.log").path])
            let output = try await shell.readAll()
            #expect(try await shell.wait() == 0)
            let pid = try #require(pid_t(output.trimmingCharacters(in: .whitespacesAndNewlines)))
            let log = directory.appendingPathComponent("out.log").path
            let sleeperStarted = (try? String(contentsOfFile: log, encoding: .utf8))?.contains("sleeper") ?? false
            #expect(sleeperStarted, "the program should have started before the parent died")
            let gone = await eventually(timeout: .seconds(15)) { kill(pid, 0) != 0 }
            #expect(gone, "the orphaned supervisor \(pid) still runs")
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            #expect(text.contains("the parent process died; stopping"), "\(text)")
            // Its program was stopped with it: no `sleep 1000` of this supervisor is left.
            let sleepers = try await runShell("pgrep -f '^/bin/sleep 1000$' || true")
            #expect(sleepers.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "left: \(sleepers)")
        }
    }

    private func runShell(_ command: String) async throws -> String {
        let child = try ChildProcess(executable: "/bin/sh", arguments: ["-c", command])
        let output = try await child.readAll()
        _ = try await child.wait()
        return output
    }
}
