import Broker
import CaseData
import CaseDatabase
import DatabaseSupport
import DocumentEngine
import ExchangeFleet
import ExchangerTestSupport
import FakeNutrient
import Foundation
import ObjectStorage
import ProcessSupport
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Whole exchanges through real processes: `exchanger-supervisor` running the orchestrator,
/// status-update, dlq, and per exchange `exchanger-s3-copy` and `exchanger-uploader`; the request
/// over HTTP; every result verified exactly (rows through the id map column by column, files byte
/// for byte, each event once, nothing left behind).
@Suite("whole exchanges through real processes", .serialized)
struct WholeExchangeTests {
    @Test("PostgreSQL + S3: a 60-document exchange finishes exact, the batch status is FINISHED, and a second POST returns the same job")
    func postgresAndS3() async throws {
        try await FleetFixture.with(.postgres, storage: .s3) { fixture in
            let demo = try await fixture.seed(documents: 60)
            var options = LocalExchangeRun.Options()
            options.timeout = .seconds(120)
            let run = LocalExchangeRun(workspace: fixture.workspace, options: options, logger: fixture.logger)
            let result = try await run.run(requestJSON: demo.requestJSON(includeNatives: true))
            #expect(result.state == "FINISHED")
            #expect(result.documents == 60 && result.copied == 60 && result.notFound == 0 && result.failed == 0)
            let verification = try #require(result.verification)
            #expect(verification.isExact, "\(verification.problems)")
            #expect(verification.documents == 60)
            #expect(verification.filesChecked == 120)  // the PDF and the native of each document
            #expect(verification.rowsChecked > 60 * 10)
            #expect(try await fixture.leftovers(result.jobId).isEmpty)
            #expect(try await fixture.eventCount("EXCHANGER_FINISHED", jobID: result.jobId) == 1)
            #expect(try await fixture.eventCount("DOCUMENT_UPLOADED", jobID: result.jobId) == 60)
            // status-update wrote the destination batch's final status (it runs on its own; give it a moment).
            let finished = try await eventually(timeout: .seconds(20)) {
                try await fixture.batchStatus(caseID: 1002, batchID: 7) == .finished
            }
            #expect(finished)
            // The orchestrator wrote each document's outcome into the destination's ledger.
            let ledger = try await runCaseSQL(fixture.databases, 1002, """
                SELECT outcome, count(*) AS n FROM exchange_documents WHERE job_id = $1 GROUP BY outcome
                """, [.text(result.jobId)])
            #expect(ledger.count == 1 && ledger.first?["outcome"].string == "delivered" && ledger.first?["n"].int == 60, "\(ledger)")
            #expect(result.leftBehind?.failed == [] && result.leftBehind?.notFound == [] && result.leftBehind?.truncated == false)

            // The same request again (a client retrying): the same job, nothing copied twice.
            let again = try await run.run(requestJSON: demo.requestJSON(includeNatives: true))
            #expect(again.jobId == result.jobId)
            #expect(again.state == "FINISHED")
            #expect(try #require(again.verification).isExact)
            #expect(try await fixture.eventCount("DOCUMENT_UPLOADED", jobID: result.jobId) == 60)
        }
    }

    @Test("PostgreSQL restarted twice during a run: the clients retry, the run finishes verified exact")
    func postgresRestartsDuringRun() async throws {
        try await FleetFixture.with(.postgres, restartableBroker: true) { fixture in
            // Enough documents that the exchange lasts several progress polls (it finished between
            // two polls of 60 documents once teardown stopped waiting out a lease).
            let demo = try await fixture.seed(documents: 300)
            var options = LocalExchangeRun.Options()
            options.timeout = .seconds(300)
            let run = LocalExchangeRun(workspace: fixture.workspace, options: options, logger: fixture.logger)
            let seen = Mutex<[String]>([])
            let runTask = Task {
                try await run.run(requestJSON: demo.requestJSON(), progress: { status, _ in
                    seen.withLock { states in if states.last != status.state { states.append(status.state) } }
                })
            }
            // First restart as soon as the exchange is submitted, the second at the next state seen.
            var restarts: [String] = []
            for round in 0..<2 {
                let observed = seen.withLock { $0.count }
                let deadline = ContinuousClock.now + .seconds(120)
                while ContinuousClock.now < deadline, seen.withLock({ $0.count }) <= (round == 0 ? 0 : observed) {
                    try await Task.sleep(for: .milliseconds(20))
                }
                let before = seen.withLock { $0.last ?? "none" }
                try await RestartablePostgres.restart()
                restarts.append(before)
            }
            let result = try await runTask.value
            #expect(restarts.count == 2)
            #expect(!restarts.contains("FINISHED"), "restarted in \(restarts)")
            #expect(result.state == "FINISHED", "\(result.error ?? "")")
            #expect(result.copied == 300 && result.failed == 0)
            let verification = try #require(result.verification)
            #expect(verification.isExact, "\(verification.problems)")
        }
    }

    @Test(
        "PostgreSQL + S3, the annotation path: pre-uploader, uploader, re-OCR and search-text finish exact for both annotation configurations",
        arguments: [false, true])
    func annotationPath(includeNatives: Bool) async throws {
        try await FleetFixture.with(.postgres, storage: .s3) { fixture in
            let demo = try await fixture.seed(documents: 12, annotations: true)
            var options = LocalExchangeRun.Options()
            options.timeout = .seconds(180)
            let run = LocalExchangeRun(workspace: fixture.workspace, options: options, logger: fixture.logger)
            let request = demo.requestJSON(includeNatives: includeNatives, requiresAnnotations: true)
            let result = try await run.run(requestJSON: request)
            #expect(result.state == "FINISHED")
            #expect(result.documents == 12 && result.copied == 12 && result.notFound == 0 && result.failed == 0)
            let verification = try #require(result.verification)
            #expect(verification.isExact, "\(verification.problems)")
            // Every document: its annotations checked, four kinds branded in, the rest a layer,
            // each page's text stored and indexed (the seeded PDFs have several pages).
            #expect(verification.annotatedDocuments == 12)
            #expect(verification.brandedInAnnotations == 12 * 4)
            #expect(verification.layerAnnotationsChecked == 12 * 3)
            #expect(verification.pageTextsChecked >= 12 && verification.pageTextsChecked == verification.indexedPagesChecked)
            #expect(verification.filesChecked == (includeNatives ? 12 : 0))  // natives only: the PDF is rebuilt
            #expect(verification.redactionsChecked == 12, "every document's redaction read back with poppler")
            for type in ["DOCUMENT_PRE_PROCESSED", "DOCUMENT_UPLOADED", "DOCUMENT_INDEXED"] {
                #expect(try await fixture.eventCount(type, jobID: result.jobId) == 12, "\(type)")
            }
            #expect(try await fixture.eventCount("DOCUMENT_COPIED", jobID: result.jobId) == 0)
            #expect(try await fixture.eventCount("NATIVE_DOCUMENT_COPIED", jobID: result.jobId) == (includeNatives ? 12 : 0))
            #expect(try await fixture.leftovers(result.jobId).isEmpty)

            // The index answers: `exchanger search` finds the documents by their page text.
            let (status, output) = try await runExchanger(
                ["search", "--case", "1002", "--json", "--limit", "100", "Synthetic"],
                environment: ["EXCHANGER_CASE_DATABASE_URL": fixture.workspace.caseDatabaseURL,
                              "EXCHANGER_CASE_DATABASE_PREFIX": fixture.workspace.caseDatabasePrefix ?? "case"])
            #expect(status == 0, "\(output)")
            let hits = output.split(separator: "\n").filter { $0.hasPrefix("{") }
            // Every page but each document's first, where the redaction covers the title line.
            #expect(hits.count == verification.indexedPagesChecked - 12, "\(output)")
            #expect(!hits.contains { $0.contains(#""position":0"#) }, "no redacted page is found by a covered word: \(output)")

            // Submitted again: the same job, nothing repeated.
            let again = try await run.run(requestJSON: request)
            #expect(again.jobId == result.jobId && again.state == "FINISHED")
            #expect(try #require(again.verification).isExact)
            #expect(try await fixture.eventCount("DOCUMENT_INDEXED", jobID: result.jobId) == 12)
        }
    }

    @Test(
        "the annotation path on a Nutrient Document Engine (the fake server over HTTP): both annotation configurations exact",
        arguments: [false, true])
    func annotationPathOnNutrient(includeNatives: Bool) async throws {
        let server = try await FakeNutrientServer.start()
        do {
            try await FleetFixture.with(
                .postgres, documentEngineURL: "nutrient+http://127.0.0.1:\(server.port)",
                engineEnvironment: ["EXCHANGER_NUTRIENT_API_TOKEN": FakeNutrientServer.token]
            ) { fixture in
                let demo = try await fixture.seed(documents: 8, annotations: true)
                #expect(await server.state.documents.count == 8, "the source documents went into the Nutrient engine")
                var options = LocalExchangeRun.Options()
                options.timeout = .seconds(180)
                let run = LocalExchangeRun(workspace: fixture.workspace, options: options, logger: fixture.logger)
                let result = try await run.run(requestJSON: demo.requestJSON(includeNatives: includeNatives, requiresAnnotations: true))
                #expect(result.state == "FINISHED")
                #expect(result.documents == 8 && result.copied == 8 && result.failed == 0)
                let verification = try #require(result.verification)
                #expect(verification.isExact, "\(verification.problems)")
                #expect(verification.annotatedDocuments == 8)
                #expect(verification.brandedInAnnotations == 8 * 4 && verification.layerAnnotationsChecked == 8 * 3)
                #expect(verification.pageTextsChecked == verification.indexedPagesChecked && verification.pageTextsChecked >= 8)
                #expect(verification.redactionsChecked == 8, "every document's redaction read back with poppler")
                // The destination documents were built (applyInstantJson, applyRedactions, flatten) and
                // uploaded by the engine; every request carried the token.
                #expect(await server.state.documents.count == 16)
                let builds = await server.state.builds
                #expect(builds.count >= 8 && builds.allSatisfy { $0.contains("applyRedactions") && $0.contains("flatten") })
                let requests = await server.state.requests
                #expect(!requests.isEmpty && requests.allSatisfy { $0.authorization == "Token token=\"\(FakeNutrientServer.token)\"" })
                #expect(try await fixture.leftovers(result.jobId).isEmpty)

                // A destination PDF whose redaction only hides the words (the source PDF itself):
                // the verifier reads the words under the box and names the leak.
                let documents = await server.state.documents
                let leaky = try #require(documents.keys.sorted().first { $0.hasPrefix("document_1002_") })
                let sourcePDF = try #require(documents.first { $0.key.hasPrefix("document_1001_") }?.value.pdf)
                #expect(await server.state.update(leaky) { $0.pdf = sourcePDF })
                let tampered = try await fixture.verify(result.jobId)
                #expect(tampered.problems.contains { $0.contains("leaks") && $0.contains("redaction") }, "\(tampered.problems)")
            }
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }

    @Test("annotations that cannot be read fail their document: one source document missing from the engine, one without a source batch")
    func unreadableAnnotationsFailClosed() async throws {
        try await FleetFixture.with(.postgres) { fixture in
            let demo = try await fixture.seed(documents: 6, annotations: true)
            let store = try await ObjectStorage.open(fixture.workspace.storageURL)
            let engine = try await DocumentEngines.open(url: fixture.workspace.documentEngineURL, caseStore: store)
            var sourceIDs: [Int64: EngineDocumentID] = [:]
            for try await object in store.list(prefix: "document-engine/document_1001_") {
                let name = object.key.rawValue.split(separator: "/")[1]
                if let id = try? EngineDocumentID(parsing: String(name)) { sourceIDs[id.documentID] = id }
            }
            // Source document 2 is gone from the engine; source document 3 has no batch.
            try await engine.delete(try #require(sourceIDs[2]))
            let pool = CaseDatabasePool(settings: try CaseDatabaseSettings(locator: fixture.databases.locator))
            _ = try await pool.withConnection(caseID: 1001) { try await $0.query("UPDATE documents SET batch_id = NULL WHERE id = 3", []) }
            await pool.shutdown()

            var options = LocalExchangeRun.Options()
            options.timeout = .seconds(180)
            let run = LocalExchangeRun(workspace: fixture.workspace, options: options, logger: fixture.logger)
            let result = try await run.run(requestJSON: demo.requestJSON(includeNatives: false, requiresAnnotations: true))
            #expect(result.state == "FINISHED")
            #expect(result.documents == 6 && result.failed == 2 && result.copied == 4, "\(result)")
            let verification = try #require(result.verification)
            // The verifier names the two failures and nothing else.
            let failures = verification.problems.filter { $0.contains("(source 2)") || $0.contains("(source 3)") }
            #expect(!failures.isEmpty && failures.count == verification.problems.count, "\(verification.problems)")
            #expect(verification.problems.contains { $0.contains("(source 2)") } && verification.problems.contains { $0.contains("(source 3)") })
            // No PDF of either reaches the destination store or engine.
            var destinationPDFs: Set<String> = []
            for try await object in store.list(prefix: "case_1002/documents/") where object.key.rawValue.hasSuffix(".pdf") {
                destinationPDFs.insert(String(object.key.rawValue.split(separator: "/")[2]))
            }
            var destinationEngine = 0
            for try await object in store.list(prefix: "document-engine/document_1002_") where object.key.rawValue.hasSuffix("/document.pdf") {
                destinationEngine += 1
            }
            #expect(destinationPDFs.count == 4 && destinationEngine == 4, "\(destinationPDFs) \(destinationEngine)")
            try await engine.shutdown()
            try await store.shutdown()
        }
    }

    /// Runs an executable of the package with `environment` over this process's, returning its exit
    /// status, standard output and standard error, and how long it took.
    static func runCapturing(_ name: String, _ arguments: [String], environment: [String: String]) throws -> (Int32, String, String, Double) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: TestEnvironment.executable(name))
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let start = Date()
        try process.run()
        let output = out.fileHandleForReading.readDataToEndOfFile(), errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self), String(decoding: errors, as: UTF8.self), Date().timeIntervalSince(start))
    }

    @Test("a missing qpdf or poppler stops `exchanger run --demo --annotations` and the pre-uploader at start, with one line naming the fix")
    func missingToolsStopAtStart() async throws {
        try await withTemporaryDirectory { directory in
            let clean = [
                "EXCHANGER_DATABASE_URL": "", "EXCHANGER_DATABASE_URL_FILE": "", "EXCHANGER_CASE_DATABASE_URL": "",
                "EXCHANGER_STORAGE_URL": "", "EXCHANGER_DOCUMENT_ENGINE_URL": "",
            ]
            let (status, output, errors, seconds) = try Self.runCapturing(
                "exchanger", ["run", "--demo", "--annotations", "--documents", "5", "--workspace", directory.path + "/demo"],
                environment: clean.merging(["EXCHANGER_QPDF_PATH": "/nonexistent/qpdf"]) { _, new in new })
            #expect(status != 0 && seconds < 10, "exit \(status) after \(seconds) s")
            #expect(errors.contains("qpdf") && errors.contains("apt-get install -y qpdf") && errors.contains("EXCHANGER_QPDF_PATH"), "\(errors)")
            #expect(!output.contains("seeding"), "nothing was seeded: \(output)")

            let poppler = try Self.runCapturing(
                "exchanger", ["run", "--demo", "--annotations", "--documents", "5", "--workspace", directory.path + "/demo2"],
                environment: clean.merging(["EXCHANGER_PDFTOTEXT_PATH": "/nonexistent/pdftotext"]) { _, new in new })
            #expect(poppler.0 != 0 && poppler.2.contains("poppler-utils") && poppler.2.contains("EXCHANGER_PDFTOTEXT_PATH"), "\(poppler.2)")

            let worker = try Self.runCapturing(
                "exchanger-pre-uploader", ["--storage-url", "file://" + directory.path + "/store"],
                environment: ["EXCHANGER_PDFTOPPM_PATH": "/nonexistent/pdftoppm", "EXCHANGER_DOCUMENT_ENGINE_URL": "local"])
            #expect(worker.0 != 0 && worker.3 < 10, "the pre-uploader refuses to start: exit \(worker.0)")
            #expect(worker.2.contains("pdftoppm") && worker.2.contains("poppler-utils"), "\(worker.2)")
        }
    }

    @Test("an engine worker pointed at Nutrient without an API token stops at start with one line naming the variables")
    func missingNutrientTokenStopsAtStart() async throws {
        try await withTemporaryDirectory { directory in
            let emptyFile = directory.appendingPathComponent("empty-token").path
            #expect(FileManager.default.createFile(atPath: emptyFile, contents: Data("\n".utf8)))
            for program in ["exchanger-uploader", "exchanger-pre-uploader", "exchanger-re-ocr"] {
                for file in ["", emptyFile, directory.path + "/no-such-file"] {
                    let (status, _, errors, seconds) = try Self.runCapturing(
                        program, ["--storage-url", "file://" + directory.path + "/store"],
                        environment: [
                            "EXCHANGER_DOCUMENT_ENGINE_URL": "nutrient+http://127.0.0.1:9",
                            "EXCHANGER_NUTRIENT_API_TOKEN": "", "EXCHANGER_NUTRIENT_API_TOKEN_FILE": file,
                        ])
                    #expect(status == 78 && seconds < 10, "\(program) with token file '\(file)': exit \(status) after \(seconds) s")
                    #expect(errors.contains("EXCHANGER_NUTRIENT_API_TOKEN"), "\(program): \(errors)")
                    #expect(errors.split(separator: "\n").count == 1, "one line: \(errors)")
                }
            }
        }
    }

    @Test("`exchanger run --demo --annotations`: no server, the annotation path through real processes, verified exact")
    func cliDemoAnnotations() async throws {
        try await withTemporaryDirectory { directory in
            let environment = [
                "EXCHANGER_DATABASE_URL": "", "EXCHANGER_DATABASE_URL_FILE": "", "EXCHANGER_CASE_DATABASE_URL": "",
                "EXCHANGER_STORAGE_URL": "", "EXCHANGER_DOCUMENT_ENGINE_URL": "",
            ]
            let (status, output) = try await runExchanger(
                ["run", "--demo", "--annotations", "--documents", "15", "--workspace", directory.path + "/demo"], environment: environment)
            #expect(status == 0, "\(output)")
            #expect(output.contains("verified   exact"), "\(output)")
            #expect(output.contains("annotations: 15 documents, 60 branded into the PDFs, 45 carried as layer annotations"), "\(output)")
            #expect(output.contains("15 total, 15 copied, 0 not found, 0 failed"), "\(output)")
        }
    }

    @Test("`exchanger run --demo` on a fresh workspace: no server, exit 0, verified exact; --json reports the same")
    func cliDemo() async throws {
        try await withTemporaryDirectory { directory in
            let workspace = directory.path + "/demo"
            // Nothing of the caller's environment may point it elsewhere.
            let environment = [
                "EXCHANGER_DATABASE_URL": "", "EXCHANGER_DATABASE_URL_FILE": "", "EXCHANGER_CASE_DATABASE_URL": "",
                "EXCHANGER_STORAGE_URL": "", "EXCHANGER_DOCUMENT_ENGINE_URL": "",
            ]
            let (status, output) = try await runExchanger(
                ["run", "--demo", "--documents", "25", "--workspace", workspace], environment: environment)
            #expect(status == 0, "\(output)")
            #expect(output.contains("FINISHED"))
            #expect(output.contains("verified   exact"), "\(output)")
            #expect(output.contains("25 total, 25 copied, 0 not found, 0 failed"), "\(output)")
            #expect(FileManager.default.fileExists(atPath: workspace + "/broker.sqlite"))
            #expect(FileManager.default.fileExists(atPath: workspace + "/logs/fleet.log"))
            // The happy path warns nothing: the supervisor forgets a deployment the orchestrator
            // removed after stopping it without a warning.
            let supervisorLog = try String(contentsOfFile: workspace + "/logs/supervisor.log", encoding: .utf8)
            let warnings = supervisorLog.split(separator: "\n").filter { $0.contains(#""level":"warning""#) }
            #expect(warnings.isEmpty, "\(warnings.joined(separator: "\n"))")

            // A second run in the same workspace reuses the case and finds the same exchange finished.
            let (againStatus, againOutput) = try await runExchanger(
                ["run", "--demo", "--documents", "25", "--workspace", workspace, "--json"], environment: environment)
            #expect(againStatus == 0, "\(againOutput)")
            let last = try #require(againOutput.split(separator: "\n").last)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
            #expect(object["state"] as? String == "FINISHED")
            let verification = try #require(object["verification"] as? [String: Any])
            #expect((verification["problems"] as? [Any])?.isEmpty == true)

            // A skipping repeat (a new exchange: skipExchanged is part of its key) leaves out all 25,
            // which the first exchange delivered, and verifies each skip against the ledger.
            let (skipStatus, skipOutput) = try await runExchanger(
                ["run", "--demo", "--documents", "25", "--workspace", workspace, "--skip-exchanged", "--json"], environment: environment)
            #expect(skipStatus == 0, "\(skipOutput)")
            let skipLine = try #require(skipOutput.split(separator: "\n").last)
            let skip = try #require(try JSONSerialization.jsonObject(with: Data(skipLine.utf8)) as? [String: Any])
            #expect(skip["state"] as? String == "FINISHED")
            #expect(skip["jobId"] as? String != object["jobId"] as? String)
            #expect(skip["skipped"] as? Int == 25, "\(skipLine)")
            #expect(skip["copied"] as? Int == 0)
            let skipVerification = try #require(skip["verification"] as? [String: Any])
            #expect(skipVerification["documentsSkipped"] as? Int == 25)
            #expect((skipVerification["problems"] as? [Any])?.isEmpty == true, "\(skipLine)")

            // The ledger says one of the first exchange's documents failed after all: the skipping
            // exchange's verification names the skip it can no longer back, and a new skipping
            // exchange (another batch) copies that one document again.
            let firstJob = try #require(object["jobId"] as? String)
            let skipJob = try #require(skip["jobId"] as? String)
            let cases = CaseDatabases(locator: try CaseDatabaseLocator(template: "sqlite://\(workspace)/cases/{database}.sqlite", prefix: "case"))
            let changed = try await runCaseSQL(cases, 1002, """
                UPDATE exchange_documents SET outcome = 'failed' WHERE job_id = $1
                  AND source_document_id = (SELECT min(source_document_id) FROM exchange_documents WHERE job_id = $1)
                RETURNING source_document_id
                """, [.text(firstJob)])
            let failedSource = try #require(changed.first?["source_document_id"].int64)
            let locations = [
                "EXCHANGER_DATABASE_URL": "sqlite://\(workspace)/broker.sqlite", "EXCHANGER_DATABASE_URL_FILE": "",
                "EXCHANGER_CASE_DATABASE_URL": "sqlite://\(workspace)/cases/{database}.sqlite",
                "EXCHANGER_STORAGE_URL": "file://\(workspace)/storage", "EXCHANGER_DOCUMENT_ENGINE_URL": "local",
            ]
            let (tampered, tamperedOutput) = try await runExchanger(["verify", skipJob], environment: locations)
            #expect(tampered == 1, "\(tamperedOutput)")
            #expect(tamperedOutput.contains("source document \(failedSource) was skipped as delivered by job \(firstJob)"), "\(tamperedOutput)")
            let (redoStatus, redoOutput) = try await runExchanger(
                ["run", "--demo", "--documents", "25", "--workspace", workspace, "--skip-exchanged", "--batch", "8"], environment: environment)
            #expect(redoStatus == 0, "\(redoOutput)")
            #expect(redoOutput.contains("1 total, 1 copied, 0 not found, 0 failed, 24 skipped"), "\(redoOutput)")
            #expect(redoOutput.contains("verified   exact"), "\(redoOutput)")
        }
    }

    @Test("`exchanger verify JOB_ID` from outside the run: exact → 0 (human and --json); a changed file → 1; no such exchange → 2")
    func cliVerify() async throws {
        try await withTemporaryDirectory { directory in
            let workspace = directory.path + "/ws"
            let isolated = [
                "EXCHANGER_DATABASE_URL": "", "EXCHANGER_DATABASE_URL_FILE": "", "EXCHANGER_CASE_DATABASE_URL": "",
                "EXCHANGER_STORAGE_URL": "", "EXCHANGER_DOCUMENT_ENGINE_URL": "",
            ]
            let (status, output) = try await runExchanger(
                ["run", "--demo", "--documents", "12", "--workspace", workspace, "--json"], environment: isolated)
            #expect(status == 0, "\(output)")
            let last = try #require(output.split(separator: "\n").last)
            let run = try #require(try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
            let jobID = try #require(run["jobId"] as? String)

            // The same locations, given the way another machine would: the environment.
            let locations = [
                "EXCHANGER_DATABASE_URL": "sqlite://\(workspace)/broker.sqlite", "EXCHANGER_DATABASE_URL_FILE": "",
                "EXCHANGER_CASE_DATABASE_URL": "sqlite://\(workspace)/cases/{database}.sqlite",
                "EXCHANGER_STORAGE_URL": "file://\(workspace)/storage", "EXCHANGER_DOCUMENT_ENGINE_URL": "local",
            ]
            let (exact, exactOutput) = try await runExchanger(["verify", jobID], environment: locations)
            #expect(exact == 0, "\(exactOutput)")
            #expect(exactOutput.contains("verified   exact"), "\(exactOutput)")
            #expect(exactOutput.contains("12 total"), "\(exactOutput)")

            let (jsonStatus, jsonOutput) = try await runExchanger(["verify", jobID, "--json"], environment: locations)
            #expect(jsonStatus == 0, "\(jsonOutput)")
            let jsonLine = try #require(jsonOutput.split(separator: "\n").last)
            let verification = try #require(try JSONSerialization.jsonObject(with: Data(jsonLine.utf8)) as? [String: Any])
            #expect(verification["jobID"] as? String == jobID)
            #expect(verification["state"] as? String == "FINISHED")
            #expect((verification["problems"] as? [Any])?.isEmpty == true)
            #expect((verification["filesChecked"] as? Int ?? 0) > 0)

            // One copied file changed behind the exchange's back: not exact, exit 1, the file named.
            let copies = URL(fileURLWithPath: workspace + "/storage/case_1002")
            let walker = try #require(FileManager.default.enumerator(at: copies, includingPropertiesForKeys: [.isRegularFileKey]))
            var files: [URL] = []
            for case let url as URL in walker where (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
                files.append(url)
            }
            let victim = try #require(files.sorted { $0.path < $1.path }.first, "no copied file under \(copies.path)")
            try Data("not the copied bytes".utf8).write(to: victim)
            let (changed, changedOutput) = try await runExchanger(["verify", jobID], environment: locations)
            #expect(changed == 1, "\(changedOutput)")
            #expect(changedOutput.contains("NOT EXACT"), "\(changedOutput)")

            let (missing, missingOutput) = try await runExchanger(["verify", "no-such-job"], environment: locations)
            #expect(missing == 2, "\(missingOutput)")
        }
    }

    @Test("a request the orchestrator refuses: exit 1 with the field named")
    func cliRefusedRequest() async throws {
        try await withTemporaryDirectory { directory in
            let request = directory.path + "/request.json"
            try #"{"sourceCaseId": 1, "destinationCaseId": 1, "batchId": 1, "labelId": 2}"#.write(toFile: request, atomically: true, encoding: .utf8)
            let child = try ChildProcess(
                executable: "/bin/sh",
                arguments: ["-c", #"exec "$0" run "$1" --workspace "$2" 2>&1"#, TestEnvironment.exchanger, request, directory.path + "/ws"],
                environment: ["EXCHANGER_DATABASE_URL": "", "EXCHANGER_CASE_DATABASE_URL": "", "EXCHANGER_STORAGE_URL": ""])
            let output = try await child.readAll()
            #expect(try await child.wait() == 1)
            #expect(output.contains("destinationCaseId"), "\(output)")
        }
    }

    @Test("a missing source case fails the exchange at once (no retry waits), with the reason, everything torn down, EXCHANGER_FAILED once")
    func failureTearsDown() async throws {
        try await FleetFixture.with(.postgres) { fixture in
            let demo = try await fixture.seed(documents: 5)
            _ = try fixture.workspace.writeAPIToken()
            // The default retries (after 30, 60 and 120 s) would outlast the 60 s watch: none may happen.
            try await fixture.withFleetAndOrchestrator(replica: "fail") { client in
                // A client with no token is told what to set, not that its token was refused.
                var anonymous = client
                anonymous.token = nil
                let refused = await #expect(throws: FleetError.self) { _ = try await anonymous.list() }
                #expect(refused?.message.contains("no API token was sent") == true && refused?.message.contains("EXCHANGER_API_TOKEN") == true,
                        "\(refused?.message ?? "")")
                // Source case 9999 has no database: the copy fails on every attempt.
                let request = demo.requestJSON().replacingOccurrences(of: #""sourceCaseId":1001"#, with: #""sourceCaseId":9999"#)
                let submitted = try await client.submit(request)
                let final = try await client.watch(submitted.jobId, timeout: .seconds(60)) { _ in }
                #expect(final.state == "FAILED")
                #expect(final.error?.contains("case database") == true && final.error?.contains("does not exist") == true, "\(final.error ?? "")")
                #expect(try await fixture.leftovers(submitted.jobId).isEmpty)
                #expect(try await fixture.eventCount("EXCHANGER_FAILED", jobID: submitted.jobId) == 1)
                #expect(try await fixture.eventCount("EXCHANGER_FINISHED", jobID: submitted.jobId) == 0)
            }
        }
    }

    @Test("cancelled while its workers run: CANCELLED, workers stopped, queues and deployments gone, nothing copied after")
    func cancellation() async throws {
        try await FleetFixture.with(.postgres) { fixture in
            let demo = try await fixture.seed(documents: 400)
            _ = try fixture.workspace.writeAPIToken()
            var workspace = fixture.workspace
            // One message at a time, so the exchange is still running when the cancellation comes.
            workspace.extraEnvironment["EXCHANGER_WORKER_BATCH_SIZE"] = "1"
            workspace.extraEnvironment["EXCHANGER_WORKER_CONCURRENCY"] = "1"
            let slow = FleetFixture(workspace: workspace, databases: fixture.databases, logger: fixture.logger)
            try await slow.withFleetAndOrchestrator(replica: "cancel") { client in
                let submitted = try await client.submit(demo.requestJSON())
                let running = try await eventually(timeout: .seconds(60)) {
                    let status = try await client.status(submitted.jobId)
                    return status.state == "PROCESSING" && (status.stages["s3-copy"]?.done ?? 0) > 0
                }
                #expect(running)
                let cancelled = try await client.cancel(submitted.jobId)
                #expect(cancelled.state == "TEARING_DOWN" || cancelled.state == "CANCELLED")
                let final = try await client.watch(submitted.jobId, timeout: .seconds(90)) { _ in }
                #expect(final.state == "CANCELLED")
                #expect(try await fixture.leftovers(submitted.jobId).isEmpty)
                let uploaded = try await fixture.eventCount("DOCUMENT_UPLOADED", jobID: submitted.jobId)
                #expect(uploaded < 400)
                try await Task.sleep(for: .seconds(1))
                #expect(try await fixture.eventCount("DOCUMENT_UPLOADED", jobID: submitted.jobId) == uploaded)
                #expect(try await fixture.eventCount("EXCHANGER_FAILED", jobID: submitted.jobId) == 1)
            }
        }
    }

    /// The states an orchestrator is killed in (SIGKILL by a failpoint right after the move into
    /// the state is committed; ACCEPTED: killed right after the 202).
    static let crashStates = ["ACCEPTED", "PROVISIONING", "COPYING_DATABASE", "CONSTRUCTING_PAYLOAD", "PROCESSING", "DRAINING"]

    @Test("an orchestrator SIGKILLed in each state: another replica resumes and the exchange finishes exact", arguments: crashStates)
    func crashResume(state: String) async throws {
        try await FleetFixture.with(.postgres) { fixture in
            let demo = try await fixture.seed(documents: 30)
            _ = try fixture.workspace.writeAPIToken()
            let fleet = try fixture.startFleet()
            var survivors: [ChildProcess] = []
            do {
                let failpoint = state == "ACCEPTED" ? [:] : ["EXCHANGER_FAILPOINT_EXIT_IN_STATE": state]
                let (doomed, first) = try fixture.startOrchestrator(replica: "doomed", environment: failpoint)
                try await first.waitUntilReady(timeout: .seconds(60))
                let submitted = try await first.submit(demo.requestJSON())
                if state == "ACCEPTED" { doomed.signal(SIGKILL) }
                let status = try await doomed.wait(timeout: .seconds(60))
                #expect(status == 128 + SIGKILL)
                if state != "ACCEPTED" { #expect(try await fixture.state(submitted.jobId) == state) }

                let (heir, second) = try fixture.startOrchestrator(replica: "heir")
                survivors.append(heir)
                try await second.waitUntilReady(timeout: .seconds(60))
                let final = try await second.watch(submitted.jobId, timeout: .seconds(90)) { _ in }
                #expect(final.state == "FINISHED")
                let verification = try await fixture.verify(submitted.jobId)
                #expect(verification.isExact, "\(verification.problems)")
                #expect(verification.documents == 30)
                #expect(try await fixture.leftovers(submitted.jobId).isEmpty)
                #expect(try await fixture.eventCount("EXCHANGER_FINISHED", jobID: submitted.jobId) == 1)
                heir.signal(SIGTERM)
                #expect(try await heir.wait(timeout: .seconds(30)) == 0)
                survivors.removeAll()
            } catch {
                for child in survivors { child.signal(SIGKILL); _ = try? await child.wait() }
                await fleet.stop()
                throw error
            }
            #expect(await fleet.stop() == 0)
        }
    }

    @Test("an orchestrator SIGKILLed while tearing a failed exchange down: another replica finishes it FAILED with nothing left")
    func crashWhileTearingDown() async throws {
        try await FleetFixture.with(.postgres) { fixture in
            let demo = try await fixture.seed(documents: 5)
            _ = try fixture.workspace.writeAPIToken()
            let fleet = try fixture.startFleet()
            var survivors: [ChildProcess] = []
            do {
                let (doomed, first) = try fixture.startOrchestrator(
                    replica: "doomed", environment: ["EXCHANGER_FAILPOINT_EXIT_IN_STATE": "TEARING_DOWN", "EXCHANGER_ORCHESTRATOR_COPY_RETRIES": "0"])
                try await first.waitUntilReady(timeout: .seconds(60))
                let request = demo.requestJSON().replacingOccurrences(of: #""sourceCaseId":1001"#, with: #""sourceCaseId":9999"#)
                let submitted = try await first.submit(request)
                #expect(try await doomed.wait(timeout: .seconds(60)) == 128 + SIGKILL)
                #expect(try await fixture.state(submitted.jobId) == "TEARING_DOWN")
                let (heir, second) = try fixture.startOrchestrator(replica: "heir")
                survivors.append(heir)
                try await second.waitUntilReady(timeout: .seconds(60))
                let final = try await second.watch(submitted.jobId, timeout: .seconds(60)) { _ in }
                #expect(final.state == "FAILED")
                #expect(try await fixture.leftovers(submitted.jobId).isEmpty)
                #expect(try await fixture.eventCount("EXCHANGER_FAILED", jobID: submitted.jobId) == 1)
                heir.signal(SIGTERM)
                #expect(try await heir.wait(timeout: .seconds(30)) == 0)
                survivors.removeAll()
            } catch {
                for child in survivors { child.signal(SIGKILL); _ = try? await child.wait() }
                await fleet.stop()
                throw error
            }
            #expect(await fleet.stop() == 0)
        }
    }
}
