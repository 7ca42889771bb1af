import Broker
import ExchangerTestSupport
import Foundation
import Testing
import WorkerRuntime

#if canImport(Glibc)
import Glibc
#endif

/// A worker that decides to exit is gone at once, whatever its clean-up is waiting for.
@Suite("Worker exit")
struct WorkerExitTests {
    @Test("the clean-up after the loop is waited for at most the exit grace")
    func cleanupIsBounded() async throws {
        let start = ContinuousClock.now
        let hung = await WorkerProcess.finish(within: .milliseconds(200)) { try? await Task.sleep(for: .seconds(120)) }
        #expect(!hung)
        // Far from the clean-up's 120 s; the bound is loose because this runs beside the parallel
        // suites, which have kept the 200 ms timer from firing for 5 s on 2 cores.
        #expect(ContinuousClock.now - start < .seconds(60), "returned after the grace, not after the clean-up")
        let quick = await WorkerProcess.finish(within: .seconds(10)) {}
        #expect(quick)
    }

    /// Every worker executable; the last two are global processors on their default queues.
    static let kinds = [
        "exchanger-s3-copy", "exchanger-pre-uploader", "exchanger-uploader", "exchanger-re-ocr", "exchanger-search-text",
        "exchanger-status-update", "exchanger-dlq",
    ]

    @Test("SIGTERM in a 60 s long poll: every worker kind exits 0 at once, not after the poll", arguments: kinds)
    func sigtermDuringLongPoll(_ kind: String) async throws {
        try await withTestBroker(.postgres) { broker, url in
            try await withTemporaryDirectory { directory in
                var arguments = ["--database", url, "--wait", "60"]
                if !["exchanger-status-update", "exchanger-dlq"].contains(kind) {
                    try await broker.createQueue("idle-q")
                    arguments = ["--queue", "idle-q"] + arguments
                }
                let worker = try WorkerProcessHandle(kind, arguments, environment: [
                    "EXCHANGER_STORAGE_URL": "file://" + directory.path,
                    "EXCHANGER_CASE_DATABASE_URL": "sqlite://\(directory.path)/{database}.sqlite",
                    "EXCHANGER_DOCUMENT_ENGINE_URL": "local",
                ])
                let started = await eventually(timeout: .seconds(30)) { worker.log(containing: "worker started") }
                #expect(started, "\(kind) started")
                // Inside its first long poll on an empty queue.
                try await Task.sleep(for: .milliseconds(500))
                let signalled = ContinuousClock.now
                worker.signal(SIGTERM)
                #expect(try await worker.wait(timeout: .seconds(45)) == 0)
                let elapsed = ContinuousClock.now - signalled
                // Far below the 60 s poll; loose, because this runs beside the parallel suites.
                #expect(elapsed < .seconds(20), "\(kind) exited \(elapsed) after SIGTERM")
                #expect(worker.log(containing: "stop requested"))
                print("sigterm-exit \(kind) \(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000) ms")
            }
        }
    }

    /// The PROCESSES of `exchanger ps --json`.
    static func processes(_ url: String) async throws -> [[String: Any]] {
        let (status, output) = try await runExchanger(["ps", "--json", "--database", url])
        guard status == 0, let line = output.split(separator: "\n").last,
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        else { throw PsFailure(output: output) }
        return object["processes"] as? [[String: Any]] ?? []
    }

    struct PsFailure: Error {
        var output: String
    }

    @Test("a bound worker whose queue is deleted logs that it exits, and does, with status 0", arguments: Backend.allCases)
    func exitsWhenItsQueueIsDeleted(_ backend: Backend) async throws {
        try await withTestBroker(backend) { broker, url in
            try await withTemporaryDirectory { directory in
                try await broker.createQueue("exit-q")
                let worker = try WorkerProcessHandle(
                    "exchanger-s3-copy", ["--queue", "exit-q", "--database", url, "--storage-url", "file://" + directory.path, "--wait", "1"],
                    // A generous grace: this asserts the clean-up completes, not how fast it is
                    // on two loaded cores (CI once saw it take over the 1 s default).
                    environment: ["EXCHANGER_WORKER_EXIT_GRACE_SECONDS": "20"])
                let started = await eventually(timeout: .seconds(30)) { worker.log(containing: "worker started") }
                #expect(started)
                // It announced itself: `exchanger ps` lists it under PROCESSES, with no supervisor.
                let pid = Int(worker.pid)
                let listed = await eventually(timeout: .seconds(30)) {
                    (try? await Self.processes(url).contains { $0["pid"] as? Int == pid }) ?? false
                }
                #expect(listed)
                let process = try await Self.processes(url).first { $0["pid"] as? Int == pid }
                #expect(process?["program"] as? String == "s3-copy")
                #expect(process?["queue"] as? String == "exit-q")
                #expect(process?["supervisor"] is NSNull, "an unbound worker")
                try await broker.deleteQueue("exit-q")
                #expect(try await worker.wait(timeout: .seconds(15)) == 0)
                #expect(worker.log(containing: "queue no longer exists; worker exits"))
                #expect(!worker.log(containing: "clean-up did not finish"))
                // Its presence went with it.
                #expect(try await Self.processes(url).contains { $0["pid"] as? Int == pid } == false)
            }
        }
    }
}
