import Broker
import ExchangerTestSupport
import CaseDatabase
import DatabaseSupport
import Foundation
import PostgresClient
import SQLiteClient
import Testing

/// Where a test's case databases live: PostgreSQL databases on the test server, or SQLite files.
enum CaseBackend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case postgres, sqlite
    var testDescription: String { "case databases in \(rawValue)" }
}

/// Case databases for one test: a unique prefix, so parallel tests never share a database.
struct TestCaseDatabases: Sendable {
    var backend: CaseBackend
    var settings: CaseDatabaseSettings
    /// postgres: the server URL; sqlite: the directory.
    var location: String

    var environment: [String: String] {
        ["EXCHANGER_CASE_DATABASE_URL": settings.locator.template, "EXCHANGER_CASE_DATABASE_PREFIX": settings.locator.prefix]
    }

    /// Creates the (empty) database of a case.
    func create(caseID: Int64) async throws {
        let name = try settings.locator.databaseName(caseID: caseID)
        switch backend {
        case .postgres:
            let admin = try await PostgresConnection.connect(url: location, configuration: .administration)
            try await admin.execute("CREATE DATABASE \(name)")
            await admin.close()
        case .sqlite:
            let path = try #require(try settings.locator.sqlitePath(caseID: caseID))
            let connection = try await SQLiteConnection.open(path: path)
            await connection.close()
        }
    }

    /// Whether the database of a case exists.
    func exists(caseID: Int64) async throws -> Bool {
        let name = try settings.locator.databaseName(caseID: caseID)
        switch backend {
        case .postgres:
            let admin = try await PostgresConnection.connect(url: location)
            let rows = try await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [.text(name)])
            await admin.close()
            return !rows.isEmpty
        case .sqlite:
            return FileManager.default.fileExists(atPath: try #require(try settings.locator.sqlitePath(caseID: caseID)))
        }
    }
}

/// Runs `body` with case databases of `backend` for `cases` (created empty), dropped afterwards.
func withCaseDatabases<T: Sendable>(
    _ backend: CaseBackend, cases: [Int64], maxOpenConnections: Int = 16, _ body: (TestCaseDatabases) async throws -> T
) async throws -> T {
    let prefix = "tc" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(10).lowercased()
    switch backend {
    case .postgres:
        let server = try TestEnvironment.postgresURL()
        let template = postgresURL(server, database: CaseDatabaseLocator.placeholder)
        let databases = TestCaseDatabases(
            backend: .postgres,
            settings: try CaseDatabaseSettings(
                locator: try CaseDatabaseLocator(template: template, prefix: prefix), maxOpenConnections: maxOpenConnections),
            location: server)
        var created: [Int64] = []
        do {
            for caseID in cases {
                try await databases.create(caseID: caseID)
                created.append(caseID)
            }
            let result = try await body(databases)
            try await dropCaseDatabases(server, prefix: prefix)
            return result
        } catch {
            try? await dropCaseDatabases(server, prefix: prefix)
            throw error
        }
    case .sqlite:
        return try await withTemporaryDirectory { directory in
            let template = "sqlite://" + directory.path + "/" + CaseDatabaseLocator.placeholder + ".sqlite"
            let databases = TestCaseDatabases(
                backend: .sqlite,
                settings: try CaseDatabaseSettings(
                    locator: try CaseDatabaseLocator(template: template, prefix: prefix), maxOpenConnections: maxOpenConnections),
                location: directory.path)
            for caseID in cases { try await databases.create(caseID: caseID) }
            return try await body(databases)
        }
    }
}

/// Drops every database whose name starts with `{prefix}_` (also ones a test created itself).
private func dropCaseDatabases(_ server: String, prefix: String) async throws {
    let admin = try await PostgresConnection.connect(url: server, configuration: .administration)
    let names = try await admin.query("SELECT datname FROM pg_database WHERE starts_with(datname, $1)", [.text(prefix + "_")])
        .compactMap { $0["datname"].string }
    for name in names { try await admin.execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)") }
    await admin.close()
}

@Suite("Case databases")
struct CaseDatabaseTests {
    @Test("batch status transitions are monotonic; duplicates and late events change nothing", arguments: CaseBackend.allCases)
    func monotonicStatus(backend: CaseBackend) async throws {
        try await withCaseDatabases(backend, cases: [42]) { databases in
            let store = BatchStatusStore(settings: databases.settings)
            defer { Task { await store.shutdown() } }
            func update(_ batch: Int64, _ status: BatchStatus, _ event: String, reason: String? = nil, summary: String? = nil) -> BatchStatusUpdate {
                BatchStatusUpdate(batchID: batch, jobID: "job-\(batch)", sourceCaseID: 41, status: status, eventID: event, reason: reason, summary: summary)
            }

            // INITIATED → FINISHED.
            #expect(try await store.record(update(1, .initiated, "e1-init"), caseID: 42))
            #expect(try await store.status(caseID: 42, batchID: 1)?.status == .initiated)
            #expect(try await store.record(update(1, .finished, "e1-fin", summary: #"{"documents":3}"#), caseID: 42))
            let one = try #require(try await store.status(caseID: 42, batchID: 1))
            #expect(one.status == .finished && one.statusRank == 2 && one.lastEventID == "e1-fin")
            #expect(one.summary == #"{"documents":3}"# && one.jobID == "job-1" && one.sourceCaseID == 41)
            #expect(one.updatedAtMilliseconds > 1_700_000_000_000)

            // FINISHED, then a late INITIATED.
            #expect(try await store.record(update(2, .finished, "e2-fin"), caseID: 42))
            #expect(try await store.record(update(2, .initiated, "e2-init"), caseID: 42) == false)
            let two = try #require(try await store.status(caseID: 42, batchID: 2))
            #expect(two.status == .finished && two.lastEventID == "e2-fin")

            // FAILED, then FINISHED: the first final status wins.
            #expect(try await store.record(update(3, .initiated, "e3-init"), caseID: 42))
            #expect(try await store.record(update(3, .failed, "e3-fail", reason: "db copy failed"), caseID: 42))
            #expect(try await store.record(update(3, .finished, "e3-fin"), caseID: 42) == false)
            let three = try #require(try await store.status(caseID: 42, batchID: 3))
            #expect(three.status == .failed && three.reason == "db copy failed" && three.lastEventID == "e3-fail")

            // The same events twice.
            #expect(try await store.record(update(4, .initiated, "e4-init"), caseID: 42))
            #expect(try await store.record(update(4, .initiated, "e4-init"), caseID: 42) == false)
            #expect(try await store.record(update(4, .finished, "e4-fin"), caseID: 42))
            #expect(try await store.record(update(4, .finished, "e4-fin"), caseID: 42) == false)
            #expect(try await store.status(caseID: 42, batchID: 4)?.status == .finished)

            #expect(try await store.status(caseID: 42, batchID: 99) == nil)
        }
    }

    @Test("a missing case database is notFound, and no SQLite file is created", arguments: CaseBackend.allCases)
    func missingDatabase(backend: CaseBackend) async throws {
        try await withCaseDatabases(backend, cases: []) { databases in
            let store = BatchStatusStore(settings: databases.settings)
            defer { Task { await store.shutdown() } }
            let error = await #expect(throws: CaseDatabaseError.self) {
                try await store.record(BatchStatusUpdate(batchID: 1, jobID: "j", sourceCaseID: nil, status: .initiated, eventID: "e"), caseID: 777)
            }
            #expect(error?.code == .notFound)
            #expect(error?.isTransient == false)
            #expect(try await databases.exists(caseID: 777) == false)
            // The same case works once its database exists.
            try await databases.create(caseID: 777)
            #expect(try await store.record(BatchStatusUpdate(batchID: 1, jobID: "j", sourceCaseID: nil, status: .initiated, eventID: "e"), caseID: 777))
        }
    }

    @Test("an unreachable server is a transient error")
    func unreachableServer() async throws {
        let settings = try CaseDatabaseSettings(locator: try CaseDatabaseLocator(template: "postgres://nobody@127.0.0.1:1/{database}?connect_timeout=2"))
        let store = BatchStatusStore(settings: settings)
        let error = await #expect(throws: CaseDatabaseError.self) { try await store.status(caseID: 5, batchID: 1) }
        #expect(error?.code == .unavailable)
        #expect(error?.isTransient == true)
        await store.shutdown()
    }

    @Test("the connection cache keeps at most its limit open, closing the least recently used", arguments: CaseBackend.allCases)
    func leastRecentlyUsed(backend: CaseBackend) async throws {
        try await withCaseDatabases(backend, cases: [1, 2, 3], maxOpenConnections: 2) { databases in
            let store = BatchStatusStore(settings: databases.settings)
            defer { Task { await store.shutdown() } }
            for caseID: Int64 in [1, 2] {
                try await store.record(BatchStatusUpdate(batchID: 9, jobID: "j", sourceCaseID: nil, status: .initiated, eventID: "e"), caseID: caseID)
            }
            #expect(await store.pool.openCases == [1, 2])
            _ = try await store.status(caseID: 1, batchID: 9)  // 1 is now more recent than 2
            _ = try await store.status(caseID: 3, batchID: 9)
            #expect(await store.pool.openCases == [1, 3])
            // Case 2 reopens on demand; its row is still there.
            #expect(try await store.status(caseID: 2, batchID: 9)?.status == .initiated)
            #expect(await store.pool.openCount == 2)
        }
    }

    @Test("a lost PostgreSQL connection is replaced on the next call")
    func reconnects() async throws {
        try await withCaseDatabases(.postgres, cases: [8]) { databases in
            let store = BatchStatusStore(settings: databases.settings)
            defer { Task { await store.shutdown() } }
            try await store.record(BatchStatusUpdate(batchID: 1, jobID: "j", sourceCaseID: nil, status: .initiated, eventID: "e1"), caseID: 8)
            let pid = try await store.pool.withConnection(caseID: 8) { connection in
                try await connection.query("SELECT pg_backend_pid() AS pid").first?["pid"].int64
            }
            let admin = try await PostgresConnection.connect(url: databases.location)
            try await admin.query("SELECT pg_terminate_backend($1::int)", [.integer(try #require(pid))])
            await admin.close()
            try await Task.sleep(for: .milliseconds(200))
            #expect(try await store.record(BatchStatusUpdate(batchID: 1, jobID: "j", sourceCaseID: nil, status: .finished, eventID: "e2"), caseID: 8))
            #expect(try await store.status(caseID: 8, batchID: 1)?.status == .finished)
        }
    }

    @Test("settings: template and prefix from the environment, defaults, and the faults named")
    func settings() throws {
        let settings = try CaseDatabaseSettings(environment: ["EXCHANGER_CASE_DATABASE_URL": "postgres://u@db:5432/{database}?sslmode=require"])
        #expect(settings.locator.prefix == "case")
        #expect(settings.maxOpenConnections == 16)
        #expect(settings.locator.kind == .postgres)
        #expect(try settings.locator.url(caseID: 42) == "postgres://u@db:5432/case_42?sslmode=require")

        let sqlite = try CaseDatabaseSettings(environment: [
            "EXCHANGER_CASE_DATABASE_URL": "sqlite:///var/lib/exchanger/cases/{database}.sqlite",
            "EXCHANGER_CASE_DATABASE_PREFIX": "tenant7", "EXCHANGER_CASE_DATABASE_MAX_CONNECTIONS": "4",
        ])
        #expect(try sqlite.locator.sqlitePath(caseID: 9) == "/var/lib/exchanger/cases/tenant7_9.sqlite")
        #expect(sqlite.maxOpenConnections == 4)

        #expect(throws: CaseDatabaseError.self) { try CaseDatabaseSettings(environment: [:]) }
        #expect(throws: CaseDatabaseError.self) { try CaseDatabaseSettings(environment: ["EXCHANGER_CASE_DATABASE_URL": "postgres://h/db"]) }
        #expect(throws: CaseDatabaseError.self) { try CaseDatabaseLocator(template: "mysql://h/{database}") }
        #expect(throws: CaseDatabaseError.self) { try CaseDatabaseLocator(template: "postgres://h/{database}", prefix: "bad-prefix") }
        #expect(throws: CaseDatabaseError.self) { try settings.locator.url(caseID: 0) }
        #expect(throws: CaseDatabaseError.self) {
            try CaseDatabaseSettings(environment: ["EXCHANGER_CASE_DATABASE_URL": "sqlite:///x/{database}", "EXCHANGER_CASE_DATABASE_MAX_CONNECTIONS": "0"])
        }
    }

    @Test("settings: the case-database URL from a secret file, and secrets masked in printed URLs")
    func secretFileAndRedaction() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("case-url-\(UUID().uuidString)")
        try "postgres://writer:s3cret@db:5432/{database}?sslmode=verify-full\n".write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let settings = try CaseDatabaseSettings(environment: ["EXCHANGER_CASE_DATABASE_URL_FILE": file.path])
        #expect(try settings.locator.url(caseID: 3) == "postgres://writer:s3cret@db:5432/case_3?sslmode=verify-full")
        #expect(throws: CaseDatabaseError.self) { try CaseDatabaseSettings(environment: ["EXCHANGER_CASE_DATABASE_URL_FILE": "/nonexistent/x"]) }

        let cases: [(String, String)] = [
            ("postgres://writer:s3cret@db:5432/x", "postgres://writer:***@db:5432/x"),
            ("postgres://writer:p@ss@db/x?sslmode=require", "postgres://writer:***@db/x?sslmode=require"),
            ("postgres://db/x?user=w&password=s3cret&sslmode=require", "postgres://db/x?user=w&password=***&sslmode=require"),
            ("postgres://db/x?PassWord=s3cret", "postgres://db/x?PassWord=***"),
            ("host=db user=w password=s3cret dbname=x", "host=db user=w password=*** dbname=x"),
            ("host=db password='s3 cr\\'et' dbname=x", "host=db password=*** dbname=x"),
            ("s3://bucket/prefix", "s3://bucket/prefix"),
            ("https://engine/api?token=abc&x=1", "https://engine/api?token=***&x=1"),
        ]
        for (url, masked) in cases {
            #expect(Broker.redact(url) == masked, "\(url)")
            #expect(!Broker.redact(url).contains("s3cret") && !Broker.redact(url).contains("abc"))
        }
    }

    @Test("a PostgreSQL URL to another host without sslmode=require or stronger is warned about")
    func weakTLSIsWarned() {
        for url in ["postgres://u@db.internal:5432/{database}", "postgres://u@10.0.0.5/x?sslmode=prefer", "postgresql://u:p@db/x?sslmode=disable"] {
            #expect(ConnectionSecurity.weakTLSWarning(url)?.contains("sslmode=verify-full") == true, "\(url)")
        }
        for url in [
            "postgres://u@db.internal/x?sslmode=require", "postgres://u@db/x?sslmode=verify-full&sslrootcert=/ca.pem", "postgres://u@127.0.0.1:5432/x",
            "postgres://u@localhost/x", "postgres://u@[::1]:5432/x", "postgres:///x?host=/var/run/postgresql", "sqlite:///tmp/x.sqlite",
        ] {
            #expect(ConnectionSecurity.weakTLSWarning(url) == nil, "\(url)")
        }
    }
}
