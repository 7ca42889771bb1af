import ArgumentParser
import Broker
import ExchangerLogging
import Foundation
import ProcessSupport

/// `exchanger bench …`: benchmarks, printing a JSON object as their last line.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmarks (the last line of output is one JSON object).",
        subcommands: [BrokerBench.self, BrokerBenchWorker.self, S3CopyBench.self, SupervisorBench.self, ExchangeBench.self, SearchIndexBench.self, AnnotationsBench.self])
}

/// Wall-clock nanoseconds, comparable across processes on one machine.
func wallClockNanoseconds() -> Int64 {
    var spec = timespec()
    clock_gettime(CLOCK_REALTIME, &spec)
    return Int64(spec.tv_sec) * 1_000_000_000 + Int64(spec.tv_nsec)
}

/// The path of the running executable, to start worker processes of the same build.
func currentExecutable() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
}

/// `exchanger bench broker`: producers and consumers as separate processes, send → receive → delete.
struct BrokerBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broker",
        abstract: "Measure broker throughput and enqueue→receive latency with producer and consumer processes.")

    @OptionGroup var options: DatabaseOptions
    @Option(help: "Producer processes.") var producers: Int = 2
    @Option(help: "Consumer processes.") var consumers: Int = 2
    @Option(help: "Messages per send batch and per receive.") var batch: Int = 50
    @Option(help: "Messages in the throughput phase.") var messages: Int = 50_000
    @Option(help: "Message body size in bytes.") var payload: Int = 256
    @Option(help: "Messages in the idle-latency phase (one at a time, spaced out); 0 skips it.") var idleSamples: Int = 200
    @Option(help: "Milliseconds between idle-latency messages.") var idleIntervalMs: Int = 10
    @Option(help: "Seconds to wait for the queue to drain before giving up.") var timeout: Double = 600

    func validate() throws {
        guard producers >= 1, consumers >= 1 else { throw ValidationError("need at least one producer and one consumer") }
        guard batch >= 1, batch <= 10_000 else { throw ValidationError("batch must be 1…10000") }
        guard messages >= producers else { throw ValidationError("need at least one message per producer") }
        guard payload >= 32, payload <= 262_144 else { throw ValidationError("payload must be 32…262144 bytes") }
    }

    func run() async throws {
        JSONLogHandler.bootstrapOnce(program: "exchanger-bench")
        let url = try options.url()
        try await Broker.migrate(url: url)
        let broker = try await Broker.connect(url: url)
        let tag = UUID().uuidString.prefix(8).lowercased()
        let queue = "bench-\(tag)"
        let idleQueue = "bench-idle-\(tag)"
        try await broker.createQueue(queue, attributes: QueueAttributes(visibilityTimeout: .seconds(120)))
        try await broker.createQueue(idleQueue, attributes: QueueAttributes(visibilityTimeout: .seconds(120)))
        // The broker's own upkeep runs as it would in any long-running process of the system.
        let maintenance = Task { await broker.runMaintenance() }
        defer { maintenance.cancel() }
        do {
            let throughput = try await throughputPhase(url: url, broker: broker, queue: queue)
            let idle = idleSamples > 0 ? try await idlePhase(url: url, broker: broker, queue: idleQueue) : []
            try await broker.deleteQueue(queue)
            try await broker.deleteQueue(idleQueue)
            await broker.close()

            var result: [String: Any] = [
                "backend": url.hasPrefix("sqlite") ? "sqlite" : "postgres",
                "producers": producers, "consumers": consumers, "batch": batch, "messages": messages, "payload_bytes": payload,
                "messages_per_second": (throughput.rate * 10).rounded() / 10,
                "p50_latency_ms": percentile(throughput.latencies, 0.50), "p99_latency_ms": percentile(throughput.latencies, 0.99),
                "elapsed_seconds": (throughput.seconds * 1000).rounded() / 1000,
                "delivered": throughput.latencies.count,
            ]
            if !idle.isEmpty {
                result["idle_p50_latency_ms"] = percentile(idle, 0.50)
                result["idle_p99_latency_ms"] = percentile(idle, 0.99)
                result["idle_samples"] = idle.count
            }
            print("throughput: \(result["messages_per_second"] ?? 0) messages/s; latency under load p50 \(result["p50_latency_ms"] ?? 0) ms, p99 \(result["p99_latency_ms"] ?? 0) ms")
            if !idle.isEmpty {
                print("idle latency: p50 \(result["idle_p50_latency_ms"] ?? 0) ms, p99 \(result["idle_p99_latency_ms"] ?? 0) ms")
            }
            let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            if throughput.latencies.count != messages {
                throw ValidationError("delivered \(throughput.latencies.count) of \(messages) messages")
            }
        } catch {
            try? await broker.deleteQueue(queue)
            try? await broker.deleteQueue(idleQueue)
            await broker.close()
            throw error
        }
    }

    private func startConsumers(url: String, queue: String, count: Int) async throws -> [ChildProcess] {
        var children: [ChildProcess] = []
        for _ in 0..<count {
            let child = try ChildProcess(executable: currentExecutable(), arguments: [
                "bench", "broker-worker", "--database", url, "--role", "consumer", "--queue", queue, "--batch", String(batch),
            ])
            children.append(child)
        }
        return children
    }

    /// Reads a consumer's "ready" line, then its final JSON line after SIGTERM.
    private func collect(_ children: [ChildProcess]) -> [Task<WorkerReport?, any Error>] {
        children.map { child in
            Task {
                var last: WorkerReport?
                for try await line in child.lines() {
                    if let report = try? JSONDecoder().decode(WorkerReport.self, from: Data(line.utf8)) { last = report }
                }
                let status = try await child.wait()
                guard status == 0 else { throw ValidationError("bench worker \(child.pid) exited with status \(status)") }
                return last
            }
        }
    }

    private func waitUntilEmpty(_ broker: Broker, _ queue: String) async throws {
        let deadline = ContinuousClock.now + seconds(timeout)
        // Elapsed time comes from the workers' own timestamps, so this poll only needs to notice the
        // end; polling faster would take CPU from the processes being measured.
        while try await broker.counters(queue).total > 0 {
            guard ContinuousClock.now < deadline else { throw ValidationError("queue did not drain within \(timeout) s") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    private func throughputPhase(url: String, broker: Broker, queue: String) async throws -> (rate: Double, seconds: Double, latencies: [Double]) {
        let consumerProcesses = try await startConsumers(url: url, queue: queue, count: consumers)
        let consumerResults = collect(consumerProcesses)
        try await Task.sleep(for: .milliseconds(300))  // let every consumer connect and start its long poll
        var producerProcesses: [ChildProcess] = []
        let share = messages / producers
        for index in 0..<producers {
            let count = index == producers - 1 ? messages - share * (producers - 1) : share
            producerProcesses.append(try ChildProcess(executable: currentExecutable(), arguments: [
                "bench", "broker-worker", "--database", url, "--role", "producer", "--queue", queue, "--batch", String(batch),
                "--count", String(count), "--payload", String(payload),
            ]))
        }
        let producerResults = collect(producerProcesses)
        var firstSend = Int64.max
        for result in producerResults {
            guard let report = try await result.value, let first = report.first_send_ns else {
                throw ValidationError("a producer reported nothing")
            }
            firstSend = min(firstSend, first)
        }
        try await waitUntilEmpty(broker, queue)
        for child in consumerProcesses { child.signal(SIGTERM) }
        var lastDelete = Int64.min
        var latencies: [Double] = []
        for result in consumerResults {
            guard let report = try await result.value else { throw ValidationError("a consumer reported nothing") }
            if let last = report.last_delete_ns { lastDelete = max(lastDelete, last) }
            latencies += (report.latencies_us ?? []).map { Double($0) / 1000 }
        }
        let elapsed = Double(lastDelete - firstSend) / 1e9
        return (Double(latencies.count) / max(elapsed, 1e-9), elapsed, latencies)
    }

    private func idlePhase(url: String, broker: Broker, queue: String) async throws -> [Double] {
        let consumerProcesses = try await startConsumers(url: url, queue: queue, count: 1)
        let results = collect(consumerProcesses)
        try await Task.sleep(for: .milliseconds(500))
        let filler = String(repeating: "x", count: max(0, payload - 24))
        for _ in 0..<idleSamples {
            try await broker.send(queue, OutgoingMessage(body: "\(wallClockNanoseconds()) \(filler)"))
            try await Task.sleep(for: .milliseconds(idleIntervalMs))
        }
        try await waitUntilEmpty(broker, queue)
        for child in consumerProcesses { child.signal(SIGTERM) }
        var latencies: [Double] = []
        for result in results {
            guard let report = try await result.value else { throw ValidationError("the idle consumer reported nothing") }
            latencies += (report.latencies_us ?? []).map { Double($0) / 1000 }
        }
        return latencies
    }
}

/// Nearest-rank percentile, in milliseconds rounded to 0.01.
func percentile(_ values: [Double], _ fraction: Double) -> Double {
    guard !values.isEmpty else { return 0 }
    let sorted = values.sorted()
    let rank = min(sorted.count - 1, max(0, Int((fraction * Double(sorted.count)).rounded(.up)) - 1))
    return (sorted[rank] * 100).rounded() / 100
}

/// What a bench worker prints as its last line.
struct WorkerReport: Codable, Sendable {
    var role: String
    var sent: Int?
    var received: Int?
    var first_send_ns: Int64?
    var last_send_ns: Int64?
    var last_delete_ns: Int64?
    var latencies_us: [Int64]?
}

/// One producer or consumer process of `exchanger bench broker` (started by it, not by hand).
struct BrokerBenchWorker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "broker-worker", shouldDisplay: false)

    @OptionGroup var options: DatabaseOptions
    @Option var role: String
    @Option var queue: String
    @Option var batch: Int = 50
    @Option var count: Int = 0
    @Option var payload: Int = 256

    func run() async throws {
        JSONLogHandler.bootstrapOnce(program: "exchanger-bench")
        let broker = try await options.connect()
        switch role {
        case "producer": try await produce(broker)
        case "consumer": try await consume(broker)
        default: throw ValidationError("role must be producer or consumer")
        }
        await broker.close()
    }

    private func produce(_ broker: Broker) async throws {
        let filler = String(repeating: "x", count: max(0, payload - 24))
        var sent = 0
        var first: Int64 = 0
        while sent < count {
            let take = min(batch, count - sent)
            let now = wallClockNanoseconds()
            if first == 0 { first = now }
            let body = "\(now) \(filler)"
            try await broker.sendBatch(queue, Array(repeating: OutgoingMessage(body: body), count: take))
            sent += take
        }
        try printReport(WorkerReport(role: "producer", sent: sent, first_send_ns: first, last_send_ns: wallClockNanoseconds()))
    }

    private func consume(_ broker: Broker) async throws {
        let stop = LockedFlag()
        let signals = Task {
            for await _ in ProcessSignals.events() {
                _ = stop.set()
                return
            }
        }
        var latencies: [Int64] = []
        var lastDelete: Int64 = 0
        var processed: [ReceiptHandle] = []
        // Each round trip deletes the batch just handled and leases the next one (one commit).
        while !stop.isSet || !processed.isEmpty {
            let (acknowledged, messages) = try await broker.acknowledgeAndReceive(
                queue, acknowledging: processed, maxMessages: stop.isSet ? 1 : batch, wait: stop.isSet ? .zero : .milliseconds(250))
            guard acknowledged.failed.isEmpty else { throw ValidationError("\(acknowledged.failed.count) deletes failed") }
            if !processed.isEmpty { lastDelete = wallClockNanoseconds() }
            processed = messages.map(\.receipt)
            let received = wallClockNanoseconds()
            for message in messages {
                let sentAt = Int64(message.body.prefix { $0 != " " }) ?? received
                latencies.append((received - sentAt) / 1000)
            }
            if stop.isSet, !processed.isEmpty {
                _ = try await broker.deleteBatch(queue, processed)
                lastDelete = wallClockNanoseconds()
                processed = []
            }
        }
        signals.cancel()
        try printReport(WorkerReport(role: "consumer", received: latencies.count, last_delete_ns: lastDelete, latencies_us: latencies))
    }

    private func printReport(_ report: WorkerReport) throws {
        FileHandle.standardOutput.write(try JSONEncoder().encode(report) + Data("\n".utf8))
    }
}

