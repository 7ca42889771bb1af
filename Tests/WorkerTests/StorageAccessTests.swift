import Broker
import ConcurrencySupport
import ExchangerEvents
import ExchangerTestSupport
import Foundation
import Logging
import ObjectStorage
import ProcessSupport
import Testing
@testable import WorkerRuntime

/// A handler whose store "refuses access" while `denied` is set: its root directory is then a
/// plain file (so the real store's probe fails) and every message fails with accessDenied.
final class RefusedStoreHandler: StorageBackedHandler {
    let store: any ObjectStore
    let root: String
    let denied = LockedBox(true)
    let handled = LockedBox(Set<Int>())
    let refusals = LockedBox(0)

    init(root: String) throws {
        self.root = root
        store = FileObjectStore(directory: root)
        try Data().write(to: URL(fileURLWithPath: root))  // a file where the directory should be
    }

    func grant() throws {
        try FileManager.default.removeItem(atPath: root)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        denied.withLock { $0 = false }
    }

    func handle(_ message: WorkerMessage) async throws -> HandlerOutcome {
        let script = try EventCoding.decode(Script.self, from: message.body)
        if denied.withLock({ $0 }) {
            refusals.withLock { $0 += 1 }
            throw ObjectStorageError(.accessDenied, "put: HTTP 403 AccessDenied: Access Denied")
        }
        handled.withLock { _ = $0.insert(script.n) }
        return .success(Effects())
    }
}

@Suite("The object store refusing a worker")
struct StorageAccessTests {
    @Test("the hold: waits its pause, then probes; refusals double the pause up to the maximum; a success resets it")
    func holdStateMachine() {
        var hold = StorageAccessHold(initial: .seconds(10), maximum: .seconds(25))
        let start = ContinuousClock.now
        #expect(hold.decide(now: start) == .receive)
        hold.refused(now: start)
        #expect(hold.decide(now: start + .seconds(9)) == .wait)
        #expect(hold.decide(now: start + .seconds(10)) == .probe)
        hold.refused(now: start + .seconds(10))
        #expect(hold.decide(now: start + .seconds(29)) == .wait && hold.decide(now: start + .seconds(30)) == .probe, "20 s the second time")
        hold.refused(now: start + .seconds(30))
        #expect(hold.decide(now: start + .seconds(54)) == .wait && hold.decide(now: start + .seconds(55)) == .probe, "capped at 25 s")
        hold.cleared()
        #expect(hold.decide(now: start + .seconds(55)) == .receive)
        hold.refused(now: start + .seconds(60))
        #expect(hold.decide(now: start + .seconds(70)) == .probe, "back to the first pause")
        #expect(StorageAccessHold.isAccessRefusal(ObjectStorageError(.accessDenied, "x")))
        #expect(StorageAccessHold.isAccessRefusal(ObjectStorageError(.configuration, "x")))
        #expect(!StorageAccessHold.isAccessRefusal(ObjectStorageError(.notFound, "x")))
        #expect(!StorageAccessHold.isAccessRefusal(ObjectStorageError(.transient, "x")))
        #expect(!StorageAccessHold.isAccessRefusal(WorkerError.recoverable("x")))
    }

    @Test("mid-run: one batch meets the refusal, then the worker stops receiving; the rest of the queue keeps its receive counts, nothing is dead-lettered; once access is back the probe resumes it and every document goes through", arguments: Backend.allCases)
    func refusalHoldsReceiving(_ backend: Backend) async throws {
        try await withTemporaryDirectory { directory in
            try await withTestBroker(backend) { broker, _ in
                try await broker.createQueue("store-dlq")
                try await broker.createQueue("store", attributes: QueueAttributes(visibilityTimeout: .seconds(5), maxReceiveCount: 3, deadLetterQueue: "store-dlq"))
                _ = try await broker.sendBatch("store", try (0..<30).map { try script($0, "ok") })
                let handler = try RefusedStoreHandler(root: directory.appendingPathComponent("objects").path)
                var configuration = testConfiguration("store", batch: 5, concurrency: 5)
                configuration.storageHold = .milliseconds(400)
                configuration.storageHoldMaximum = .milliseconds(800)
                let worker = Worker(broker: broker, handler: handler, configuration: configuration, stager: PayloadStager(store: nil), logger: Logger(label: "test"))
                let running = Task { try await worker.run() }
                // The first batch of 5 meets the refusal; then three seconds of probes (every
                // 0.4–0.8 s) fail without receiving, so no other message is touched.
                #expect(await eventually(timeout: .seconds(60)) { handler.refusals.withLock { $0 } >= 5 })
                try await Task.sleep(for: .seconds(3))
                #expect(handler.refusals.withLock { $0 } == 5, "only the first batch was received")
                let counters = try await broker.counters(["store", "store-dlq"])
                #expect(counters["store-dlq"]?.visible == 0, "nothing dead-lettered")
                #expect(counters["store"]?.total == 30)
                try handler.grant()
                let done = try await eventually(timeout: .seconds(20)) {
                    let counters = try await broker.counters(["store", "store-dlq"])
                    return counters["store"]?.total == 0
                }
                worker.requestStop()
                try await running.value
                #expect(done)
                #expect(handler.handled.withLock { $0.count } == 30)
                #expect(try await broker.counters(["store-dlq"])["store-dlq"]?.visible == 0)
            }
        }
    }

    @Test("at start: a store whose bucket does not exist stops the worker with exit 78 and one line naming the store and what to check")
    func missingBucketStopsAtStart() async throws {
        let endpoint = try TestEnvironment.required("EXCHANGER_TEST_S3_ENDPOINT")
        try await withTestBroker(.sqlite) { broker, url in
            try await broker.createQueue("s3q")
            let started = ContinuousClock.now
            let child = try ChildProcess(
                executable: "/bin/sh",
                arguments: ["-c", #""$0" --queue s3q 2>&1"#, TestEnvironment.executable("exchanger-s3-copy")],
                environment: [
                    "EXCHANGER_DATABASE_URL": url, "EXCHANGER_STORAGE_URL": "s3://no-such-bucket-\(UUID().uuidString.prefix(8).lowercased())",
                    "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": endpoint,
                    "EXCHANGER_WORKER_PRESENCE_SECONDS": "0",
                ])
            let output = try await child.readAll()
            #expect(try await child.wait() == 78, "\(output)")
            #expect(ContinuousClock.now - started < .seconds(30))
            let line = output.split(separator: "\n").first { $0.hasPrefix("exchanger-s3-copy: cannot start:") }
            #expect(line?.contains("object storage s3://no-such-bucket-") == true && line?.contains("AWS_*") == true, "\(output)")
        }
    }

    @Test("`exchanger run` with a bucket that does not exist: exit 1 within seconds naming the store, before anything is seeded")
    func runChecksTheStoreFirst() async throws {
        let endpoint = try TestEnvironment.required("EXCHANGER_TEST_S3_ENDPOINT")
        try await withTemporaryDirectory { directory in
            let started = ContinuousClock.now
            let workspace = directory.appendingPathComponent("ws").path
            let (status, output) = try await runExchanger(
                ["-c", #""$0" run --demo --documents 3 --workspace "$1" 2>&1"#, TestEnvironment.exchanger, workspace],
                environment: [
                    "EXCHANGER_STORAGE_URL": "s3://no-such-bucket-\(UUID().uuidString.prefix(8).lowercased())", "EXCHANGER_DATABASE_URL": "",
                    "EXCHANGER_CASE_DATABASE_URL": "", "EXCHANGER_DOCUMENT_ENGINE_URL": "",
                    "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": endpoint,
                ], executable: "/bin/sh")
            #expect(status == 1, "\(output)")
            #expect(ContinuousClock.now - started < .seconds(10))
            #expect(output.contains("exchanger run: cannot start: object storage s3://no-such-bucket-") && output.contains("AWS_*"), "\(output)")
            #expect(!output.contains("seeding"), "nothing was seeded")
        }
    }
}
