import ArgumentParser
import Broker
import ExchangerEvents
import ExchangerLogging
import Foundation
import ObjectStorage
import ProcessSupport

#if canImport(Glibc)
import Glibc
#endif

/// `exchanger bench s3-copy`: documents through the queue and real `exchanger-s3-copy` worker
/// processes, against the physical reference of the same store measured in the same run
/// (`cp -r` for `file://`, `aws s3 cp --recursive` for `s3://`).
struct S3CopyBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "s3-copy",
        abstract: "Measure s3-copy throughput (objects/s) against cp -r or aws s3 cp --recursive, and idle worker RSS.")

    @OptionGroup var options: DatabaseOptions
    @Option(help: "Documents (one object each).") var objects: Int = 10_000
    @Option(help: "Object size in bytes.") var size: Int = 65_536
    @Option(help: "file or s3.") var store: String = "file"
    @Option(help: "Store root: file:///dir (default: a temp dir) or s3://bucket[/prefix] (default: EXCHANGER_STORAGE_URL).")
    var storageURL: String?
    @Option(help: "Worker processes.") var workers: Int = 2
    @Option(help: "Messages per receive.") var batch: Int = 50
    @Option(help: "Messages handled at once per worker.") var concurrency: Int = 16
    @Option(help: "Seconds to wait for the copy to finish before giving up.") var timeout: Double = 900
    @Flag(help: "Skip the reference measurement.") var noReference = false

    func validate() throws {
        guard objects >= 1, size >= 1, workers >= 1 else { throw ValidationError("objects, size and workers must be ≥ 1") }
        guard store == "file" || store == "s3" else { throw ValidationError("--store is file or s3") }
    }

    func run() async throws {
        JSONLogHandler.bootstrapOnce(program: "exchanger-bench")
        let environment = ProcessInfo.processInfo.environment
        let databaseURL = try options.url()
        try await Broker.migrate(url: databaseURL)
        let tag = UUID().uuidString.prefix(8).lowercased()
        var temporaryRoot: URL?
        let rootURL: String
        if let storageURL {
            rootURL = storageURL
        } else if store == "file" {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("exchanger-bench-\(tag)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            temporaryRoot = directory
            rootURL = "file://" + directory.path
        } else if let fromEnvironment = environment["EXCHANGER_STORAGE_URL"], fromEnvironment.hasPrefix("s3://") {
            rootURL = fromEnvironment
        } else {
            throw ValidationError("--store s3 needs --storage-url s3://bucket or EXCHANGER_STORAGE_URL")
        }
        defer { if let temporaryRoot { try? FileManager.default.removeItem(at: temporaryRoot) } }
        let objectStore = try await ObjectStorage.open(rootURL, environment: environment)
        let broker = try await Broker.connect(url: databaseURL)
        let sourceCase = Int64.random(in: 1_000_000...9_000_000)
        let destinationCase = sourceCase + 1

        // 1. Source documents (not timed).
        try await writeSources(objectStore, caseID: sourceCase)

        // 2. The physical reference, same files, same run. Each measured phase starts with the
        // page cache's dirty pages written out, so neither pays for the other's writes.
        var reference: (name: String, rate: Double)?
        if !noReference {
            sync()
            reference = try await measureReference(rootURL: rootURL, sourceCase: sourceCase, tag: String(tag), environment: environment)
        }

        // 3. The tasks, through the queue.
        let queue = "bench-s3copy-\(tag)"
        let uploader = "bench-uploader-\(tag)"
        let deadLetters = "bench-dlq-\(tag)"
        try await broker.createQueue(deadLetters)
        try await broker.createQueue(uploader)
        try await broker.createQueue(queue, attributes: QueueAttributes(visibilityTimeout: .seconds(120), deadLetterQueue: deadLetters))
        let enqueueStarted = ContinuousClock.now
        var batchOfTasks: [OutgoingMessage] = []
        for index in 0..<objects {
            let document = Int64(index + 1)
            let task = DocumentTask(
                jobID: "bench-\(tag)", sourceCaseID: sourceCase, caseID: destinationCase, batchID: 1, sourceDocumentID: document,
                documentID: document, files: [DocumentFile(name: "\(document).pdf", kind: .rendition)],
                routes: [DocumentTask.Route.uploader: uploader])
            batchOfTasks.append(try task.outgoing())
            if batchOfTasks.count == 500 || index == objects - 1 {
                _ = try await broker.sendBatch(queue, batchOfTasks)
                batchOfTasks.removeAll(keepingCapacity: true)
            }
        }
        let enqueueSeconds = (ContinuousClock.now - enqueueStarted) / .seconds(1)

        // 4. Worker processes until every document reached the uploader queue.
        let executable = URL(fileURLWithPath: currentExecutable()).deletingLastPathComponent().appendingPathComponent("exchanger-s3-copy").path
        sync()
        let started = ContinuousClock.now
        var children: [ChildProcess] = []
        for _ in 0..<workers {
            children.append(try ChildProcess(
                executable: executable,
                arguments: ["--queue", queue, "--database", databaseURL, "--storage-url", rootURL, "--batch-size", String(batch),
                            "--concurrency", String(concurrency), "--wait", "1"],
                environment: ["EXCHANGER_LOG_LEVEL": "warning"], stdout: .discard))
        }
        let deadline = started + .milliseconds(Int64(timeout * 1000))
        var done = 0
        while ContinuousClock.now < deadline {
            done = try await broker.counters(uploader).visible
            if done >= objects { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let elapsed = (ContinuousClock.now - started) / .seconds(1)
        guard done >= objects else {
            for child in children { child.signal(SIGKILL, group: true) }
            throw ValidationError("only \(done) of \(objects) documents were copied within \(timeout) s")
        }

        // 5. Idle memory, then a graceful stop.
        try await Task.sleep(for: .seconds(2))
        let idleRSS = children.compactMap { residentKilobytes(pid: $0.pid) }
        for child in children { child.signal(SIGTERM) }
        var exitCodes: [Int32] = []
        for child in children { exitCodes.append(try await child.wait()) }

        var copied = 0
        for try await _ in objectStore.list(prefix: CaseKeys.casePrefix(caseID: destinationCase) + "/") { copied += 1 }
        let deadLettered = try await broker.counters(deadLetters).total

        // Clean up queues and (for s3) the objects written.
        for name in [queue, uploader, deadLetters] { try? await broker.deleteQueue(name) }
        await broker.close()
        if temporaryRoot == nil {
            for prefix in [sourceCase, destinationCase].map({ CaseKeys.casePrefix(caseID: $0) + "/" }) {
                for try await info in objectStore.list(prefix: prefix) { try? await objectStore.delete(info.key) }
            }
        }
        try await objectStore.shutdown()

        let rate = Double(objects) / elapsed
        var result: [String: Any] = [
            "store": store, "objects": objects, "size_bytes": size, "workers": workers, "batch": batch, "concurrency": concurrency,
            "objects_per_second": (rate * 10).rounded() / 10, "elapsed_seconds": (elapsed * 1000).rounded() / 1000,
            "enqueue_seconds": (enqueueSeconds * 1000).rounded() / 1000, "copied_objects": copied, "dead_lettered": deadLettered,
            "worker_exit_codes": exitCodes.map(Int.init),
            "idle_rss_mb_max": ((Double(idleRSS.max() ?? 0) / 1024) * 10).rounded() / 10,
            "backend": databaseURL.hasPrefix("sqlite") ? "sqlite" : "postgres",
        ]
        if let reference {
            result["reference"] = reference.name
            result["reference_objects_per_second"] = (reference.rate * 10).rounded() / 10
            result["ratio"] = ((rate / reference.rate) * 1000).rounded() / 1000
        }
        let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
        guard copied == objects, exitCodes.allSatisfy({ $0 == 0 }) else {
            throw ValidationError("expected \(objects) copied objects and clean exits; got \(copied) and \(exitCodes)")
        }
    }

    private func writeSources(_ store: any ObjectStore, caseID: Int64) async throws {
        var generator = SystemRandomNumberGenerator()
        let base = (0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let parallel = 16
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<objects {
                if index >= parallel { try await group.next() }
                group.addTask {
                    var bytes = base
                    withUnsafeBytes(of: UInt64(index).littleEndian) { stamp in
                        for (offset, byte) in stamp.enumerated() where offset < bytes.count { bytes[offset] = byte }
                    }
                    let document = Int64(index + 1)
                    let key = try CaseKeys.documentFile(caseID: caseID, documentID: document, fileName: "\(document).pdf")
                    try await store.put(key, Data(bytes), contentType: "application/pdf")
                }
            }
            try await group.waitForAll()
        }
    }

    private func measureReference(rootURL: String, sourceCase: Int64, tag: String, environment: [String: String]) async throws -> (String, Double) {
        let prefix = CaseKeys.casePrefix(caseID: sourceCase)
        if rootURL.hasPrefix("file://") {
            let root = String(rootURL.dropFirst("file://".count))
            let target = root + "/reference-\(tag)"
            let started = ContinuousClock.now
            let status = try await ChildProcess(executable: "/bin/cp", arguments: ["-r", root + "/" + prefix, target], stdout: .discard).wait()
            let seconds = (ContinuousClock.now - started) / .seconds(1)
            guard status == 0 else { throw ValidationError("cp -r exited with \(status)") }
            _ = try await ChildProcess(executable: "/bin/rm", arguments: ["-rf", target], stdout: .discard).wait()
            return ("cp -r", Double(objects) / seconds)
        }
        let location = rootURL.hasSuffix("/") ? rootURL : rootURL + "/"
        var arguments = ["s3", "cp", "--recursive", "--quiet", location + prefix + "/", location + "reference-\(tag)/"]
        if let endpoint = environment["AWS_ENDPOINT_URL_S3"] ?? environment["AWS_ENDPOINT_URL"] { arguments += ["--endpoint-url", endpoint] }
        guard let aws = Self.which("aws") else { throw ValidationError("the reference needs the aws CLI (pip install awscli), or pass --no-reference") }
        let started = ContinuousClock.now
        let status = try await ChildProcess(executable: aws, arguments: arguments, stdout: .discard).wait()
        let seconds = (ContinuousClock.now - started) / .seconds(1)
        guard status == 0 else { throw ValidationError("aws s3 cp --recursive exited with \(status)") }
        _ = try await ChildProcess(
            executable: aws, arguments: ["s3", "rm", "--recursive", "--quiet", location + "reference-\(tag)/"]
                + (arguments.contains("--endpoint-url") ? Array(arguments.suffix(2)) : []),
            stdout: .discard
        ).wait()
        return ("aws s3 cp --recursive", Double(objects) / seconds)
    }

    static func which(_ name: String) -> String? {
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }
}

/// VmRSS of a process in kB, from /proc.
func residentKilobytes(pid: pid_t) -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    }
    return nil
}
