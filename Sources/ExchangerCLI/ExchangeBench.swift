import ArgumentParser
import Broker
import CaseData
import DatabaseSupport
import ExchangeFleet
import ExchangerLogging
import Foundation
import Logging
import PostgresClient
import ProcessSupport

/// `exchanger bench exchange`: the case-data copy against a raw `psql COPY … TO STDOUT | psql COPY
/// … FROM STDIN` pipe of the same rows (the physical limit), a whole exchange of N documents
/// through the real fleet, and a 10-document exchange from POST to EXCHANGER_FINISHED, all in one
/// run against one PostgreSQL server. The last line is a JSON object.
struct ExchangeBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exchange",
        abstract: "Measure the case-data copy (vs a raw psql COPY pipe) and whole exchanges through the real fleet.",
        discussion: """
            Needs PostgreSQL (--database, a server where this user may create databases) and psql on PATH or under \
            /usr/lib/postgresql/*/bin. Case databases are created on the same server as {prefix}_{caseId} with a \
            fresh prefix and dropped afterwards unless --keep. Files go to a temporary local store unless \
            EXCHANGER_STORAGE_URL is set.
            """)

    @Option(help: "A PostgreSQL server URL (postgres://user@host:port/db) where this user may create databases: the run creates a fresh broker database and case databases there and drops them afterwards.") var database: String
    @Option(help: "Documents of the large exchange.") var documents = 10_000
    @Option(help: "Least size of each PDF rendition in bytes.") var pdfBytes = 65_536
    @Option(help: "Documents of the small (latency) exchange; 0 skips it.") var smallDocuments = 10
    @Option(help: "Run the small exchange this many times (each a new batch) and report p50, p95 and max POST → FINISHED.") var `repeat` = 1
    @Option(help: "Most workers per stage.") var maxProcs = 2
    @Flag(help: "Copy the native files as well.") var natives = false
    @Flag(help: "Skip the exact verification of the large exchange (its time is never counted).") var noVerify = false
    @Flag(help: "Keep the case databases and the workspace.") var keep = false

    func validate() throws {
        guard database.hasPrefix("postgres://") || database.hasPrefix("postgresql://") else {
            throw ValidationError("--database must be a postgres:// URL")
        }
        guard (1...1_000_000).contains(documents) else { throw ValidationError("--documents must be 1…1000000") }
        guard smallDocuments >= 0, smallDocuments <= documents else { throw ValidationError("--small-documents must be 0…--documents") }
        guard (1...1000).contains(`repeat`) else { throw ValidationError("--repeat must be 1…1000") }
    }

    /// The case-database URL template on the broker's server: the broker URL with its database
    /// name replaced by `{database}`.
    static func caseTemplate(_ url: String) throws -> String {
        guard let scheme = url.range(of: "://") else { throw ValidationError("cannot read \(url)") }
        let rest = url[scheme.upperBound...]
        guard let slash = rest.firstIndex(of: "/") else { return url + "/{database}" }
        let query = rest[slash...].firstIndex(of: "?").map { String(rest[$0...]) } ?? ""
        return String(url[..<slash]) + "/{database}" + query
    }

    func run() async throws {
        JSONLogHandler.bootstrapOnce(program: "exchanger-bench")
        var logger = Logger(label: "exchanger.bench")
        logger.logLevel = .warning
        let environment = ProcessInfo.processInfo.environment
        let prefix = "bench\(getpid())"
        let template = try Self.caseTemplate(database)
        let directory = NSTemporaryDirectory() + "/exchanger-bench-\(getpid())"
        // A fresh broker database: an earlier run's exchanges must not answer this run's requests
        // (the same request is idempotent).
        let brokerDatabase = "\(prefix)_broker"
        let admin = try await PostgresConnection.connect(url: database)
        try await admin.execute("CREATE DATABASE \(brokerDatabase)")
        await admin.close()
        let brokerURL = template.replacingOccurrences(of: "{database}", with: brokerDatabase)
        var workspaceEnvironment = environment
        workspaceEnvironment["EXCHANGER_DATABASE_URL"] = brokerURL
        workspaceEnvironment["EXCHANGER_CASE_DATABASE_URL"] = template
        workspaceEnvironment["EXCHANGER_CASE_DATABASE_PREFIX"] = prefix
        let workspace = try FleetWorkspace(directory: directory, environment: workspaceEnvironment)
        try workspace.prepare()
        let databases = try CaseDatabases(urlTemplate: template, prefix: prefix)
        let source: Int64 = 1, engineDestination: Int64 = 2, rawDestination: Int64 = 3, exchangeDestination: Int64 = 4
        let smallDestination: Int64 = 5
        let cases = [source, engineDestination, rawDestination, exchangeDestination, smallDestination]
        defer {
            if !keep { try? FileManager.default.removeItem(atPath: directory) }
        }
        do {
            let result = try await measure(
                workspace: workspace, databases: databases, logger: logger,
                cases: (source, engineDestination, rawDestination, exchangeDestination, smallDestination))
            if !keep {
                for id in cases { try? await databases.drop(caseID: id) }
                await dropDatabase(brokerDatabase)
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            FileHandle.standardOutput.write(try encoder.encode(result) + Data("\n".utf8))
            let smallFailed = result.small.map { !$0.finished } ?? false
            let repeatsFailed = result.smallLatency.map { $0.finished < $0.runs } ?? false
            if !result.exchange.finished || result.exchange.verified == false || smallFailed || repeatsFailed { throw ExitCode(1) }
        } catch {
            if !keep {
                for id in cases { try? await databases.drop(caseID: id) }
                await dropDatabase(brokerDatabase)
            }
            throw error
        }
    }

    /// Drops a database of the server; failures only reported.
    private func dropDatabase(_ name: String) async {
        do {
            let admin = try await PostgresConnection.connect(url: database)
            try await admin.execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
            await admin.close()
        } catch {
            status("could not drop \(name): \(error)")
        }
    }

    struct Result: Encodable {
        struct Copy: Encodable {
            var rows: Int
            var seconds: Double
            var rowsPerSecond: Double
            enum CodingKeys: String, CodingKey {
                case rows, seconds
                case rowsPerSecond = "rows_per_second"
            }
        }
        struct Exchange: Encodable {
            var documents: Int
            var finished: Bool
            var wallSeconds: Double
            var postToFinishedSeconds: Double?
            var documentsPerSecond: Double
            var verified: Bool?
            var verificationSeconds: Double?
            enum CodingKeys: String, CodingKey {
                case documents, finished, verified
                case wallSeconds = "wall_seconds"
                case postToFinishedSeconds = "post_to_finished_seconds"
                case documentsPerSecond = "documents_per_second"
                case verificationSeconds = "verification_seconds"
            }
        }
        /// POST → EXCHANGER_FINISHED of the repeated small exchange (`--repeat`).
        struct Latency: Encodable {
            var runs: Int
            var finished: Int
            var p50Seconds: Double
            var p95Seconds: Double
            var maxSeconds: Double
            var seconds: [Double]
            enum CodingKeys: String, CodingKey {
                case runs, finished, seconds
                case p50Seconds = "p50_seconds"
                case p95Seconds = "p95_seconds"
                case maxSeconds = "max_seconds"
            }

            /// The nearest-rank percentile `q` (0…1) of `values`.
            static func percentile(_ values: [Double], _ q: Double) -> Double {
                let sorted = values.sorted()
                guard !sorted.isEmpty else { return 0 }
                let rank = Int((q * Double(sorted.count)).rounded(.up))
                return sorted[min(max(rank, 1), sorted.count) - 1]
            }
        }
        var benchmark = "exchange"
        var documents: Int
        var pdfBytes: Int
        var seedSeconds: Double
        var rawPipe: Copy
        var engineCopy: Copy
        var copyRatio: Double
        var exchange: Exchange
        var small: Exchange?
        var smallLatency: Latency?
        var wallSeconds: Double
        var documentsPerSecond: Double
        var copyRowsPerSecond: Double
        var rawPipeRowsPerSecond: Double
        enum CodingKeys: String, CodingKey {
            case benchmark, documents, exchange, small
            case smallLatency = "small_latency"
            case pdfBytes = "pdf_bytes"
            case seedSeconds = "seed_seconds"
            case rawPipe = "raw_pipe"
            case engineCopy = "engine_copy"
            case copyRatio = "copy_ratio_vs_raw_pipe"
            case wallSeconds = "wall_seconds"
            case documentsPerSecond = "documents_per_second"
            case copyRowsPerSecond = "copy_rows_per_second"
            case rawPipeRowsPerSecond = "raw_pipe_rows_per_second"
        }
    }

    private func measure(
        workspace: FleetWorkspace, databases: CaseDatabases, logger: Logger,
        cases: (source: Int64, engine: Int64, raw: Int64, exchange: Int64, small: Int64)
    ) async throws -> Result {
        let clock = ContinuousClock()
        status("seeding \(documents) documents (PDF ≥ \(pdfBytes) bytes) …")
        var started = clock.now
        let (demo, _) = try await DemoCase.prepare(
            workspace: workspace, documents: documents, sourceCaseID: cases.source, destinationCaseID: cases.exchange, batchID: 1,
            pdfBytes: pdfBytes, logger: logger)
        let seedSeconds = Self.seconds(clock.now - started)
        for id in [cases.engine, cases.raw, cases.small] { _ = try await databases.create(caseID: id) }

        status("raw psql COPY pipe …")
        let raw = try await rawPipe(databases: databases, from: cases.source, to: cases.raw)

        status("case-data copy engine …")
        let copier = CaseDataCopier(
            databases: databases, settings: try CaseCopySettings(environment: ProcessInfo.processInfo.environment), logger: logger)
        started = clock.now
        let report = try await copier.copy(
            sourceCase: cases.source, destinationCase: cases.engine, selection: .documentIDs(demo.documentIDs), jobID: "bench-copy")
        let copySeconds = Self.seconds(clock.now - started)
        let engine = Result.Copy(rows: report.insertedRows, seconds: copySeconds, rowsPerSecond: Double(report.insertedRows) / copySeconds)
        status("  \(engine.rows) rows in \(String(format: "%.2f", copySeconds)) s")

        status("exchange of \(documents) documents through the fleet …")
        var options = LocalExchangeRun.Options()
        options.maxProcs = maxProcs
        options.maxDocumentIDs = max(10_000, documents)
        options.verify = false
        let run = LocalExchangeRun(workspace: workspace, options: options, logger: logger)
        let large = try await run.run(requestJSON: demo.requestJSON(includeNatives: natives))
        status("  \(large.state) in \(String(format: "%.2f", large.exchangeSeconds)) s")
        var exchange = Result.Exchange(
            documents: documents, finished: large.state == "FINISHED", wallSeconds: large.exchangeSeconds,
            postToFinishedSeconds: try await postToFinished(large.jobId, brokerURL: workspace.brokerURL, logger: logger),
            documentsPerSecond: Double(documents) / large.exchangeSeconds)
        if !noVerify && large.state == "FINISHED" {
            status("verifying …")
            started = clock.now
            let verification = try await run.verify(large.jobId)
            exchange.verified = verification.isExact
            exchange.verificationSeconds = Self.seconds(clock.now - started)
            for problem in verification.problems.prefix(20) { status("  verification: \(problem)") }
        }

        var small: Result.Exchange?
        var latency: Result.Latency?
        if smallDocuments > 0 {
            var seconds: [Double] = []
            var finished = 0
            for index in 0..<`repeat` {
                status("exchange of \(smallDocuments) documents (POST → EXCHANGER_FINISHED)\(`repeat` > 1 ? ", run \(index + 1) of \(`repeat`)" : "") …")
                // Each run is a new batch, so a new exchange with its own queues.
                let result = try await run.run(
                    requestJSON: demo.requestJSON(
                        includeNatives: natives, limit: smallDocuments, destinationCaseID: cases.small, batchID: Int64(2 + index)))
                let measured = Result.Exchange(
                    documents: smallDocuments, finished: result.state == "FINISHED", wallSeconds: result.exchangeSeconds,
                    postToFinishedSeconds: try await postToFinished(result.jobId, brokerURL: workspace.brokerURL, logger: logger),
                    documentsPerSecond: Double(smallDocuments) / result.exchangeSeconds)
                if small == nil { small = measured }
                if measured.finished { finished += 1 }
                seconds.append(measured.postToFinishedSeconds ?? measured.wallSeconds)
            }
            if `repeat` > 1 {
                latency = Result.Latency(
                    runs: `repeat`, finished: finished, p50Seconds: Result.Latency.percentile(seconds, 0.5),
                    p95Seconds: Result.Latency.percentile(seconds, 0.95), maxSeconds: seconds.max() ?? 0, seconds: seconds)
                status(String(format: "  POST → FINISHED over %d runs: p50 %.2f s, p95 %.2f s, max %.2f s", `repeat`,
                              latency?.p50Seconds ?? 0, latency?.p95Seconds ?? 0, latency?.maxSeconds ?? 0))
            }
        }
        return Result(
            documents: documents, pdfBytes: pdfBytes, seedSeconds: seedSeconds, rawPipe: raw, engineCopy: engine,
            copyRatio: engine.rowsPerSecond / raw.rowsPerSecond, exchange: exchange, small: small, smallLatency: latency,
            wallSeconds: exchange.wallSeconds, documentsPerSecond: exchange.documentsPerSecond,
            copyRowsPerSecond: engine.rowsPerSecond, rawPipeRowsPerSecond: raw.rowsPerSecond)
    }

    /// Every data table of the source case piped table by table into an empty case database of the
    /// same schema: `psql -c "\copy (SELECT …) TO STDOUT" | psql -c "\copy t FROM STDIN"`.
    private func rawPipe(databases: CaseDatabases, from source: Int64, to destination: Int64) async throws -> Result.Copy {
        let psql = try Self.psql()
        let sourceURL = try databases.locator.url(caseID: source)
        let destinationURL = try databases.locator.url(caseID: destination)
        let clock = ContinuousClock()
        let started = clock.now
        var rows = 0
        for table in CaseSchema.dataTables {
            let script = """
                set -o pipefail
                "$0" -X -q -v ON_ERROR_STOP=1 -d "$1" -c "\\\\copy (SELECT * FROM \(table)) TO STDOUT" \
                  | "$0" -X -v ON_ERROR_STOP=1 -d "$2" -c "\\\\copy \(table) FROM STDIN"
                """
            let child = try ChildProcess(
                executable: "/bin/bash", arguments: ["-c", script, psql, sourceURL, destinationURL], stdout: .pipe, stderr: .inherit)
            let output = try await child.readAll()
            let status = try await child.wait()
            guard status == 0 else { throw ValidationError("the raw psql pipe of \(table) failed (\(status)): \(output)") }
            for line in output.split(separator: "\n") where line.hasPrefix("COPY ") {
                rows += Int(line.dropFirst(5).trimmingCharacters(in: .whitespaces)) ?? 0
            }
        }
        let seconds = Self.seconds(clock.now - started)
        guard rows > 0 else { throw ValidationError("the raw psql pipe reported no rows (psql printed no COPY counts)") }
        status("  \(rows) rows in \(String(format: "%.2f", seconds)) s")
        return Result.Copy(rows: rows, seconds: seconds, rowsPerSecond: Double(rows) / seconds)
    }

    /// Seconds from the exchange's acceptance to its EXCHANGER_FINISHED event, from the broker's own timestamps.
    private func postToFinished(_ jobID: String, brokerURL: String, logger: Logger) async throws -> Double? {
        let broker = try await Broker.connect(url: brokerURL, logger: logger)
        defer { Task { await broker.close() } }
        let rows = try await broker.transaction { tx in
            try await tx.query("""
                SELECT extract(epoch FROM (e.published_at - x.created_at))::float8 AS seconds
                FROM exchanges x JOIN broker_events e
                  ON e.attributes->'eventType'->>'value' = 'EXCHANGER_FINISHED' AND e.attributes->'jobId'->>'value' = x.job_id
                WHERE x.job_id = $1
                """, [.text(jobID)])
        }
        return rows.first?["seconds"].double
    }

    static func psql() throws -> String {
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let candidate = "\(directory)/psql"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        for version in versions.sorted(by: >) {
            let candidate = "/usr/lib/postgresql/\(version)/bin/psql"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw ValidationError("psql is neither on PATH nor under /usr/lib/postgresql/*/bin (apt-get install postgresql-client)")
    }

    private func status(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    static func seconds(_ duration: Duration) -> Double {
        let (whole, atto) = duration.components
        return Double(whole) + Double(atto) / 1e18
    }
}
