import ExchangerTestSupport
import ConcurrencySupport
import Broker
import DatabaseSupport
import Foundation
import PostgresClient
import ProcessSupport
import Testing

/// Real processes against a real database: concurrent consumers, a consumer killed with SIGKILL,
/// PostgreSQL restarted under a running consumer, concurrent migrations, long-poll wake-ups.
@Suite("Broker with processes")
struct BrokerProcessTests {
    @Test("several consumer processes: every message delivered and deleted exactly once", arguments: Backend.allCases)
    func concurrentConsumers(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, url in
            try await broker.createQueue("work", attributes: QueueAttributes(visibilityTimeout: .seconds(120)))
            let consumers = try (0..<3).map { _ in
                try ChildProcess(executable: TestEnvironment.exchanger, arguments: [
                    "queues", "receive", "work", "--database", url, "--max-messages", "25", "--wait", "1", "--delete",
                    "--count", "100000", "--idle-exit", "3",
                ])
            }
            let outputs = consumers.map { child in Task { try await child.readAll() } }
            var sent: [String] = []
            for chunk in 0..<12 {
                sent += try await broker.sendBatch("work", (0..<50).map { OutgoingMessage(body: "c\(chunk)-\($0)") })
            }
            var seen: [String] = []
            for (child, output) in zip(consumers, outputs) {
                let lines = receivedLines(try await output.value)
                #expect(try await child.wait() == 0)
                #expect(!lines.isEmpty, "each consumer took a share")
                seen += lines.compactMap { $0["messageId"] as? String }
            }
            #expect(seen.count == sent.count)
            #expect(Set(seen) == Set(sent))
            #expect(try await broker.counters("work").total == 0)
        }
    }

    @Test("a consumer killed with SIGKILL while holding leases loses nothing", arguments: Backend.allCases)
    func killedConsumer(backend: Backend) async throws {
        try await withTestBroker(backend) { broker, url in
            try await broker.createQueue("work", attributes: QueueAttributes(maxReceiveCount: 5))
            let ids = try await broker.sendBatch("work", (0..<20).map { OutgoingMessage(body: "m\($0)") })
            let victim = try ChildProcess(executable: TestEnvironment.exchanger, arguments: [
                "queues", "receive", "work", "--database", url, "--max-messages", "10", "--visibility-timeout", "2",
                "--process-delay-ms", "600000", "--delete",
            ])
            var held: [String] = []
            for try await line in victim.lines() {
                if let id = receivedLines(line).first?["messageId"] as? String { held.append(id) }
                if held.count == 10 { break }
            }
            #expect(held.count == 10)
            victim.signal(SIGKILL, group: true)
            #expect(try await victim.wait() == 128 + SIGKILL)
            #expect(try await broker.counters("work").inFlight == 10)

            // The other ten are available now; the killed consumer's ten come back when their lease ends.
            let all = try await broker.drain("work", count: 20, timeout: .seconds(15))
            #expect(Set(all.map(\.messageID)) == Set(ids))
            let redelivered = all.filter { held.contains($0.messageID) }
            #expect(redelivered.count == 10)
            #expect(redelivered.allSatisfy { $0.receiveCount == 2 })
            #expect(try await broker.counters("work").total == 0)
        }
    }

    @Test("a long poll wakes when another process sends", arguments: Backend.allCases)
    func longPollWakeUp(backend: Backend) async throws {
        var configuration = BrokerConfiguration()
        configuration.fallbackPollInterval = .seconds(1)
        try await withTestBroker(backend, configuration: configuration) { broker, url in
            try await broker.createQueue("wake")
            let clock = ContinuousClock()
            let started = clock.now
            let waiter = Task { try await broker.receive("wake", wait: .seconds(20)) }
            try await Task.sleep(for: .milliseconds(1500))
            let sender = try await runExchanger(["queues", "send", "wake", "--body", "hi", "--database", url])
            #expect(sender.status == 0)
            let sentAt = clock.now
            let messages = try await waiter.value
            let woke = clock.now
            #expect(messages.map(\.body) == ["hi"])
            #expect(sentAt - started >= .milliseconds(1500))
            // Well inside the 20 s wait: the notification (or the ≤ 1 s fallback poll) woke it.
            #expect(woke - sentAt < .seconds(2))

            // Many parked receivers on one queue are all served by one send each.
            let waiters = (0..<5).map { _ in Task { try await broker.receive("wake", wait: .seconds(20)) } }
            try await Task.sleep(for: .milliseconds(300))
            try await broker.sendBatch("wake", (0..<5).map { OutgoingMessage(body: "n\($0)") })
            var bodies: [String] = []
            for waiter in waiters { bodies += try await waiter.value.map(\.body) }
            #expect(bodies.sorted() == (0..<5).map { "n\($0)" })
        }
    }

    @Test("concurrent migrations: one applies, the others find nothing to do", arguments: Backend.allCases)
    func concurrentMigrate(backend: Backend) async throws {
        try await withTestDatabase(backend, migrate: false) { url in
            let runs = try (0..<4).map { _ in
                try ChildProcess(executable: TestEnvironment.exchanger, arguments: ["migrate", "--database", url])
            }
            var outputs: [String] = []
            for run in runs {
                outputs.append(try await run.readAll())
                #expect(try await run.wait() == 0)
            }
            #expect(outputs.filter { $0.contains("applied migrations") }.count == 1)
            #expect(outputs.filter { $0.contains("up to date") }.count == 3)
            // The one that applied listed every version; the newest is the schema version now.
            let applied = outputs.first { $0.contains("applied migrations") }?
                .split(separator: "\n").first { $0.contains("applied migrations:") }?
                .split(separator: ",").last.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            #expect((applied ?? 0) >= 3)
            let broker = try await Broker.connect(url: url)
            #expect(try await broker.schemaVersion() == applied, "every migration applied")
            await broker.close()
        }
    }

    @Test("an unmigrated database is refused with a clear error", arguments: Backend.allCases)
    func unmigrated(backend: Backend) async throws {
        try await withTestDatabase(backend, migrate: false) { url in
            let error = await #expect(throws: BrokerError.self) { try await Broker.connect(url: url) }
            #expect(error?.code == .schemaOutdated)
            let cli = try await runExchanger(["queues", "--database", url])
            #expect(cli.status != 0)
        }
    }

    @Test("PostgreSQL restarted under a running consumer: it reconnects and finishes the work")
    func postgresRestart() async throws {
        try await RestartablePostgres.withDatabase { url in
            let broker = try await Broker.connect(url: url)
            try await broker.createQueue("work", attributes: QueueAttributes(visibilityTimeout: .seconds(5), maxReceiveCount: 10))
            let first = try await broker.sendBatch("work", (0..<100).map { OutgoingMessage(body: "before-\($0)") })
            let consumer = try ChildProcess(executable: TestEnvironment.exchanger, arguments: [
                "queues", "receive", "work", "--database", url, "--max-messages", "5", "--wait", "1", "--delete",
                "--count", "200", "--idle-exit", "30", "--process-delay-ms", "50",
            ], stderr: .discard)
            let lines = LockedBox<[String]>([])
            let reader = Task {
                for try await line in consumer.lines() { lines.withLock { $0.append(line) } }
            }
            // Restart only once the consumer is connected and working.
            #expect(await eventually { lines.withLock { $0.count } >= 10 })
            let doneAtRestart = lines.withLock { $0.count }

            try await RestartablePostgres.restart()

            // The test's own broker reconnects too: its pool replaces the dead connections.
            var second: [String] = []
            let sent = await eventually(timeout: .seconds(30)) {
                do {
                    second = try await broker.sendBatch("work", (0..<100).map { OutgoingMessage(body: "after-\($0)") })
                    return true
                } catch let error as BrokerError where error.isTransient {
                    return false
                } catch {
                    return false
                }
            }
            #expect(sent)
            try await reader.value
            #expect(try await consumer.wait() == 0)
            let ids = Set(receivedLines(lines.withLock { $0.joined(separator: "\n") }).compactMap { $0["messageId"] as? String })
            #expect(doneAtRestart < 100, "the restart happened while work was left")
            #expect(ids.isSuperset(of: Set(first + second)), "every message was delivered after the restart")
            let left = await eventually(timeout: .seconds(15)) { (try? await broker.counters("work").total) == 0 }
            #expect(left)
            await broker.close()
        }
    }
}
