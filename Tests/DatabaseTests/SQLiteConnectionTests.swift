import DatabaseSupport
import Foundation
import ProcessSupport
import SQLiteClient
import Testing

/// SQLiteConnection on files in a fresh temporary directory per test.
@Suite("SQLiteConnection")
struct SQLiteConnectionTests {
    // MARK: URLs

    @Test func parsesURLsWithOptions() throws {
        let (path, configuration) = try SQLiteConfiguration.parse(url: "sqlite:///abs/path.db?busy_timeout_ms=50&synchronous=normal")
        #expect(path == "/abs/path.db")
        #expect(configuration.busyTimeout == .milliseconds(50))
        #expect(configuration.synchronous == "NORMAL")

        let (defaultPath, defaults) = try SQLiteConfiguration.parse(url: "sqlite:///var/lib/exchanger/broker.db")
        #expect(defaultPath == "/var/lib/exchanger/broker.db")
        #expect(defaults == SQLiteConfiguration())
        #expect(defaults.busyTimeout == .seconds(10))
        #expect(defaults.synchronous == "FULL")

        #expect(try SQLiteConfiguration.parse(url: "/plain/path.db").path == "/plain/path.db")
        #expect(try SQLiteConfiguration.parse(url: "sqlite:///tmp/with%20space.db").path == "/tmp/with space.db")
        #expect(try SQLiteConfiguration.parse(url: "sqlite:///x.db?synchronous=OFF").configuration.synchronous == "OFF")
        #expect(try SQLiteConfiguration.parse(url: "sqlite:///x.db?busy_timeout_ms=0").configuration.busyTimeout == .zero)
    }

    @Test(arguments: [
        "sqlite:///x.db?journal_mode=delete",  // unknown option
        "sqlite:///x.db?busy_timeout_ms=soon",
        "sqlite:///x.db?busy_timeout_ms=-1",
        "sqlite:///x.db?synchronous=sometimes",
        "sqlite:///x.db?busy_timeout_ms=50&bogus=1",
        "postgres://postgres@localhost/db",
        "relative/path.db",
        "sqlite://",
        "sqlite:///",
        "",
    ])
    func rejectsBadURLs(url: String) async throws {
        let error = #expect(throws: DatabaseError.self) { try SQLiteConfiguration.parse(url: url) }
        #expect(error?.code == .invalidURL)
        let openError = await #expect(throws: DatabaseError.self) { try await SQLiteConnection.open(url: url) }
        #expect(openError?.code == .invalidURL)
    }

    @Test func openingAURLAppliesItsOptionsAndWAL() async throws {
        try await withSQLiteDirectory { directory in
            // The parent folder does not exist yet: open creates it.
            let path = directory + "/nested/folder/broker.db"
            let db = try await SQLiteConnection.open(url: "sqlite://\(path)?busy_timeout_ms=50&synchronous=normal")
            #expect(await db.path == path)
            #expect(try await db.query("PRAGMA journal_mode").first?[0] == .text("wal"))
            #expect(try await db.query("PRAGMA busy_timeout").first?[0] == .integer(50))
            #expect(try await db.query("PRAGMA synchronous").first?[0] == .integer(1))  // NORMAL
            #expect(try await db.query("PRAGMA foreign_keys").first?[0] == .integer(1))
            try await db.execute("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1)")
            #expect(FileManager.default.fileExists(atPath: path + "-wal"), "WAL mode keeps a -wal file next to the database")
            await db.close()

            // A second connection to the same file sees WAL mode persisted in the file.
            let again = try await SQLiteConnection.open(path: path)
            #expect(try await again.query("PRAGMA journal_mode").first?[0] == .text("wal"))
            #expect(try await again.query("PRAGMA synchronous").first?[0] == .integer(2))  // FULL, the default
            #expect(try await again.query("SELECT x FROM t").first?["x"] == .integer(1))
            await again.close()
        }
    }

    // MARK: Values

    @Test func everyValueKindRoundTrips() async throws {
        try await withSQLiteDatabase { db in
            let allBytes = (0...255).map { UInt8($0) }
            let values: [SQLValue] =
                [.null]
                + [0, 1, -1, Int64.min, Int64.max].map(SQLValue.integer)
                + [0.1, -2.5, 1e-300, -1.5e300, .pi, .greatestFiniteMagnitude, .leastNonzeroMagnitude, .infinity, -.infinity]
                .map(SQLValue.double)
                + PostgresConnectionTests.texts.map(SQLValue.text)
                + [allBytes, allBytes.reversed(), [0], Array(repeating: 0xff, count: 70_000)].map(SQLValue.blob)
            for value in values {
                let rows = try await db.query("SELECT ? AS v", [value])
                #expect(rows.first?["v"] == value, "\(value) came back as \(rows.first?["v"] ?? .null)")
            }
            // SQLite has no boolean type: booleans are stored as 1 and 0.
            #expect(try await db.query("SELECT ? AS v", [true]).first?["v"] == .integer(1))
            #expect(try await db.query("SELECT ? AS v", [false]).first?["v"].bool == false)

            try await db.execute("CREATE TABLE kinds (id INTEGER PRIMARY KEY, n INTEGER, d REAL, s TEXT, b BLOB)")
            let stored: [[SQLValue]] = [
                [.null, .null, .null, .null],
                [.integer(.min), .double(-0.5), .text("emoji 👩‍👩‍👧‍👦 and 'quotes'"), .blob(allBytes)],
                [.integer(.max), .double(1e300), .text(""), .blob([1, 2, 3])],
            ]
            for row in stored { #expect(try await db.update("INSERT INTO kinds (n, d, s, b) VALUES (?, ?, ?, ?)", row) == 1) }
            let rows = try await db.query("SELECT n, d, s, b FROM kinds ORDER BY id")
            #expect(rows.map(\.values) == stored)
            #expect(rows.first?.columns == ["n", "d", "s", "b"])

            // Values never become SQL.
            let attack = "'); DROP TABLE kinds; --"
            try await db.update("INSERT INTO kinds (s) VALUES (?)", [.text(attack)])
            #expect(try await db.query("SELECT count(*) AS n FROM kinds WHERE s = ?", [.text(attack)]).first?["n"] == .integer(1))
        }
    }

    /// An empty blob is a value, not NULL.
    @Test func emptyBlobIsNotNull() async throws {
        try await withSQLiteDatabase { db in
            // sqlite3_bind_blob binds NULL when given a NULL pointer, which an empty buffer may have.
            let rows = try await db.query("SELECT ? AS v, typeof(?) AS t", [.blob([]), .blob([])])
            #expect(rows.first?["v"] == .blob([]))
            #expect(rows.first?["t"] == .text("blob"))
        }
    }

    /// SQLite text may hold NUL characters; the value must not be cut short.
    @Test func textWithNulRoundTrips() async throws {
        try await withSQLiteDatabase { db in
            // Regression: text bound as a C string (length -1) used to be cut at the first NUL.
            let value = "before\u{0}after"
            let rows = try await db.query("SELECT ? AS v", [.text(value)])
            #expect(rows.first?["v"] == .text(value))
        }
    }

    @Test func statementsBeyondTheCacheSizeStillWork() async throws {
        try await withSQLiteDirectory { directory in
            var configuration = SQLiteConfiguration()
            configuration.statementCacheSize = 4
            let db = try await SQLiteConnection.open(path: directory + "/cache.db", configuration: configuration)
            for _ in 0..<3 {
                var results: [SQLValue] = []
                for offset in 1...20 { results.append(try await db.query("SELECT ? + \(offset) AS v", [100]).first?["v"] ?? .null) }
                #expect(results == (1...20).map { .integer(100 + Int64($0)) })
            }
            let mismatch = await #expect(throws: DatabaseError.self) { try await db.query("SELECT ? + ?", [1]) }
            #expect(mismatch?.code == .misuse)
            await db.close()
        }
    }

    // MARK: Errors

    @Test func constraintAndSyntaxErrors() async throws {
        try await withSQLiteDatabase { db in
            try await db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE)")
            let insert = "INSERT INTO users (id, email) VALUES (?, ?)"
            try await db.update(insert, [1, "a@example.com"])

            let unique = try await #require(throws: DatabaseError.self) { try await db.update(insert, [2, "a@example.com"]) }
            #expect(unique.code == .queryFailed)
            #expect(unique.sqlState == "SQLITE_2067")
            #expect(unique.isUniqueViolation)
            #expect(!unique.isTransient)
            #expect(unique.statement == insert)

            let primaryKey = try await #require(throws: DatabaseError.self) { try await db.update(insert, [1, "b@example.com"]) }
            #expect(primaryKey.sqlState == "SQLITE_1555")
            #expect(primaryKey.isUniqueViolation)

            let notNull = try await #require(throws: DatabaseError.self) { try await db.update(insert, [3, nil]) }
            #expect(notNull.code == .queryFailed)
            #expect(!notNull.isUniqueViolation)

            let syntax = try await #require(throws: DatabaseError.self) { try await db.query("SELEC 1") }
            #expect(syntax.code == .queryFailed)
            #expect(syntax.sqlState == "SQLITE_1")
            let missing = try await #require(throws: DatabaseError.self) { try await db.execute("DELETE FROM missing_table") }
            #expect(missing.code == .queryFailed)

            #expect(try await db.query("SELECT count(*) AS n FROM users").first?["n"] == .integer(1))
        }
    }

    // MARK: Transactions

    @Test func transactionsCommitAndRollBack() async throws {
        try await withSQLiteDirectory { directory in
            let path = directory + "/tx.db"
            let db = try await SQLiteConnection.open(path: path)
            let other = try await SQLiteConnection.open(path: path)
            try await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            let count = "SELECT count(*) AS n FROM t"

            let result = try await db.transaction { tx in
                let inside = tx.inTransaction
                #expect(inside)
                try tx.update("INSERT INTO t (id) VALUES (1)")
                #expect(try await other.query(count).first?["n"] == .integer(0))
                return 7
            }
            #expect(result == 7)
            #expect(await db.inTransaction == false)
            #expect(try await other.query(count).first?["n"] == .integer(1))

            await #expect(throws: ExpectedFailure(tag: "undo")) {
                try await db.transaction { tx in
                    try tx.update("INSERT INTO t (id) VALUES (2)")
                    try tx.update("DELETE FROM t WHERE id = 1")
                    throw ExpectedFailure(tag: "undo")
                }
            }
            #expect(try await db.query("SELECT id FROM t").map { $0["id"] } == [.integer(1)])
            #expect(await db.inTransaction == false)
            #expect(await db.isUsable)

            // A failing statement inside: the error propagates and everything is rolled back.
            let error = try await #require(throws: DatabaseError.self) {
                try await db.transaction { tx in
                    try tx.update("INSERT INTO t (id) VALUES (3)")
                    try tx.update("INSERT INTO t (id) VALUES (1)")
                }
            }
            #expect(error.isUniqueViolation)
            #expect(try await db.query(count).first?["n"] == .integer(1))

            // Nested transactions are misuse; the outer one carries on.
            try await db.transaction { tx in
                try tx.update("INSERT INTO t (id) VALUES (4)")
                let nested = await #expect(throws: DatabaseError.self) { try await tx.transaction { _ in 0 } }
                #expect(nested?.code == .misuse)
            }
            #expect(try await other.query("SELECT id FROM t ORDER BY id").map { $0["id"] } == [.integer(1), .integer(4)])

            // A deferred (read) transaction keeps one snapshot while another connection commits.
            let snapshot = try await other.transaction(.deferred) { tx in
                let before = try tx.query(count).first?["n"]
                try await db.update("INSERT INTO t (id) VALUES (5)")
                let after = try tx.query(count).first?["n"]
                return [before, after]
            }
            #expect(snapshot == [.integer(2), .integer(2)])
            #expect(try await other.query(count).first?["n"] == .integer(3))
            await db.close()
            await other.close()
        }
    }

    @Test func immediateTransactionsOfTwoConnectionsSerialise() async throws {
        try await withSQLiteDirectory { directory in
            let path = directory + "/serial.db"
            let first = try await SQLiteConnection.open(path: path)
            let second = try await SQLiteConnection.open(path: path)
            try await first.execute("CREATE TABLE log (id INTEGER PRIMARY KEY, writer TEXT NOT NULL)")
            let (locked, lockedContinuation) = AsyncStream<Void>.makeStream()
            let firstWriter = Task {
                try await first.transaction { tx in
                    try tx.update("INSERT INTO log (writer) VALUES ('first')")
                    lockedContinuation.yield()
                    try await Task.sleep(for: .milliseconds(400))
                    try tx.update("INSERT INTO log (writer) VALUES ('first')")
                }
            }
            for await _ in locked { break }
            let start = ContinuousClock.now
            _ = try await second.transaction { tx in try tx.update("INSERT INTO log (writer) VALUES ('second')") }
            let waited = ContinuousClock.now - start
            try await firstWriter.value
            #expect(waited >= .milliseconds(300), "the second writer did not wait for the first: \(waited)")
            let writers = try await second.query("SELECT writer FROM log ORDER BY id").map { $0["writer"] }
            #expect(writers == [.text("first"), .text("first"), .text("second")])
            await first.close()
            await second.close()
        }
    }

    @Test func aWriterBlockedLongerThanTheBusyTimeoutFailsWithBusy() async throws {
        try await withSQLiteDirectory { directory in
            let path = directory + "/busy.db"
            let holder = try await SQLiteConnection.open(path: path)
            try await holder.execute("CREATE TABLE t (x INTEGER)")
            var configuration = SQLiteConfiguration()
            configuration.busyTimeout = .milliseconds(150)
            let blocked = try await SQLiteConnection.open(path: path, configuration: configuration)
            try await holder.execute("BEGIN IMMEDIATE")
            try await holder.update("INSERT INTO t (x) VALUES (1)")

            let start = ContinuousClock.now
            let error = try await #require(throws: DatabaseError.self) {
                try await blocked.transaction { tx in try tx.update("INSERT INTO t (x) VALUES (2)") }
            }
            let waited = ContinuousClock.now - start
            #expect(error.code == .busy)
            #expect(error.isTransient)
            #expect(error.sqlState?.hasPrefix("SQLITE_5") == true)
            #expect(waited >= .milliseconds(120), "gave up after \(waited), before the busy timeout")
            #expect(waited < .seconds(3))
            #expect(await blocked.inTransaction == false)
            let plain = try await #require(throws: DatabaseError.self) { try await blocked.update("INSERT INTO t (x) VALUES (3)") }
            #expect(plain.code == .busy)
            // WAL: readers are not blocked by the writer, and do not see its uncommitted row.
            #expect(try await blocked.query("SELECT count(*) AS n FROM t").first?["n"] == .integer(0))

            try await holder.execute("COMMIT")
            _ = try await blocked.transaction { tx in try tx.update("INSERT INTO t (x) VALUES (4)") }
            #expect(try await holder.query("SELECT x FROM t ORDER BY x").map { $0["x"] } == [.integer(1), .integer(4)])
            await holder.close()
            await blocked.close()
        }
    }

    @Test func writesOfAnotherProcessAreSeen() async throws {
        let sqlite3 = try #require(
            ["/usr/bin/sqlite3", "/usr/local/bin/sqlite3", "/bin/sqlite3"].first { FileManager.default.isExecutableFile(atPath: $0) },
            "the sqlite3 command-line tool is missing (Debian package sqlite3)")
        try await withSQLiteDirectory { directory in
            let path = directory + "/shared.db"
            let db = try await SQLiteConnection.open(path: path)
            try await db.execute("CREATE TABLE entries (id INTEGER PRIMARY KEY, source TEXT NOT NULL, n INTEGER NOT NULL)")
            let rows = 200
            let script = (1...rows).map { "INSERT INTO entries (source, n) VALUES ('cli', \($0));" }.joined(separator: "\n")
                + "\nSELECT count(*) FROM entries WHERE source = 'swift';"

            // Hold the write lock while the other process starts: its first INSERT must wait for us.
            try await db.execute("BEGIN IMMEDIATE")
            try await db.update("INSERT INTO entries (source, n) VALUES ('swift', 0)")
            let child = try ChildProcess(executable: sqlite3, arguments: ["-bail", "-cmd", ".timeout 10000", path, script])
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await db.query("SELECT count(*) AS n FROM entries WHERE source = 'cli'").first?["n"] == .integer(0))
            try await db.execute("COMMIT")
            // Both processes write at the same time now.
            for n in 1...rows {
                try await db.update("INSERT INTO entries (source, n) VALUES ('swift', ?)", [.integer(Int64(n))])
            }
            let output = try await child.readAll()
            let status = try await child.wait()
            #expect(status == 0, "sqlite3 exited with \(status)")
            // The other process saw at least our committed first row.
            let seenByChild = try #require(Int(output.trimmingCharacters(in: .whitespacesAndNewlines)), "sqlite3 printed '\(output)'")
            #expect((1...(rows + 1)).contains(seenByChild))

            let summary = try await db.query("SELECT source, count(*) AS n, sum(n) AS total FROM entries GROUP BY source ORDER BY source")
            #expect(summary.map { $0["source"] } == [.text("cli"), .text("swift")])
            #expect(summary.first?["n"] == .integer(Int64(rows)))
            #expect(summary.first?["total"] == .integer(Int64(rows * (rows + 1) / 2)))
            #expect(summary.last?["n"] == .integer(Int64(rows + 1)))
            await db.close()
        }
    }

    /// Closing is final, but a late call on a closed connection must fail, not wait forever.
    @Test func callsAfterCloseFailWithConnectionClosed() async throws {
        try await withSQLiteDirectory { directory in
            let db = try await SQLiteConnection.open(path: directory + "/closed.db")
            await db.close()
            try await Task.sleep(for: .milliseconds(100))
            // Regression: see PostgresConnectionTests.callsAfterCloseFailWithConnectionClosed.
            let result = try #require(
                await outcome(within: .seconds(3)) { try await db.query("SELECT 1") },
                "a call on a closed SQLiteConnection never returned")
            switch result {
            case .success: Issue.record("a closed connection ran a query")
            case .failure(let error): #expect((error as? DatabaseError)?.code == .connectionClosed)
            }
        }
    }
}
