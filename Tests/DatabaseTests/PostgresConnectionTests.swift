import ConcurrencySupport
import DatabaseSupport
import Foundation
import PostgresClient
import Testing

/// PostgresConnection against the server `scripts/test` starts (EXCHANGER_TEST_POSTGRES_URL).
/// Every test uses temporary tables or uniquely named scratch tables and channels, so the tests
/// run in parallel.
@Suite("PostgresConnection")
struct PostgresConnectionTests {
    // MARK: Parameters and values

    static let texts: [String] = [
        "", "plain", "it's \"quoted\" ''twice''", #"back\slash \\ and \' and \x41 and \n (escapes stay literal)"#,
        "line\nbreak\r\n\ttab", "Grüße, 日本語, Ελληνικά, עברית", "emoji 👩‍👩‍👧‍👦 🇨🇭 🙂", "NULL", "$1 $2 ?",
        "  leading and trailing spaces  ", String(repeating: "long text ", count: 20_000),
    ]

    @Test func everyValueKindRoundTripsThroughParameters() async throws {
        try await withPostgres { db in
            let allBytes = (0...255).map { UInt8($0) }
            let cases: [(cast: String, value: SQLValue)] =
                ["bigint", "float8", "text", "bytea", "boolean"].map { ($0, SQLValue.null) }
                + [0, 1, -1, 42, Int64.min, Int64.max, Int64(Int32.max) + 1].map { ("bigint", SQLValue.integer($0)) }
                + [0.0, 0.1, -2.5, 1e-300, -1.5e300, .pi, .greatestFiniteMagnitude, .leastNonzeroMagnitude, .infinity, -.infinity]
                .map { ("float8", SQLValue.double($0)) }
                + Self.texts.map { ("text", SQLValue.text($0)) }
                + [allBytes, allBytes.reversed(), [], [0], [0, 0, 0], Array(repeating: 0xff, count: 70_000)].map { ("bytea", SQLValue.blob($0)) }
                + [true, false].map { ("boolean", SQLValue.bool($0)) }
            for (cast, value) in cases {
                let rows = try await db.query("SELECT $1::\(cast) AS v", [value])
                #expect(rows.count == 1)
                #expect(rows.first?["v"] == value, "\(cast) \(value) came back as \(rows.first?["v"] ?? .null)")
            }
            let nan = try await db.query("SELECT $1::float8 AS v", [.double(.nan)])
            #expect(nan.first?["v"].double?.isNaN == true)

            // The same values stored in a table, several parameters per statement.
            let table = uniqueName("kinds")
            try await db.execute("CREATE TEMP TABLE \(table) (id serial PRIMARY KEY, n bigint, d float8, s text, b bytea, f boolean)")
            let stored: [[SQLValue]] = [
                [.null, .null, .null, .null, .null],
                [.integer(.min), .double(-0.5), .text(Self.texts[3]), .blob(allBytes), .bool(true)],
                [.integer(.max), .double(1e300), .text(Self.texts[6]), .blob([]), .bool(false)],
            ]
            for values in stored {
                #expect(try await db.update("INSERT INTO \(table) (n, d, s, b, f) VALUES ($1, $2, $3, $4, $5)", values) == 1)
            }
            let rows = try await db.query("SELECT n, d, s, b, f FROM \(table) ORDER BY id")
            #expect(rows.map(\.values) == stored)
            #expect(rows.first?.columns == ["n", "d", "s", "b", "f"])
        }
    }

    @Test func sqlInsideValuesIsStoredLiterally() async throws {
        try await withPostgres { db in
            let table = uniqueName("victim")
            try await db.execute("CREATE TEMP TABLE \(table) (id serial PRIMARY KEY, note text)")
            let payloads = [
                "'; DROP TABLE \(table); --", "x'); DROP TABLE \(table); --", #"\'; DROP TABLE \#(table); --"#,
                "1; SELECT pg_sleep(10)", "$1", "' OR '1'='1",
            ]
            for payload in payloads {
                #expect(try await db.update("INSERT INTO \(table) (note) VALUES ($1)", [.text(payload)]) == 1)
            }
            let rows = try await db.query("SELECT note FROM \(table) ORDER BY id")
            #expect(rows.map { $0["note"] } == payloads.map(SQLValue.text))
            let found = try await db.query("SELECT count(*) AS n FROM \(table) WHERE note = $1", [.text(payloads[0])])
            #expect(found.first?["n"] == .integer(1))
            let tableStillExists = try await db.query("SELECT to_regclass($1) IS NOT NULL AS present", [.text(table)])
            #expect(tableStillExists.first?["present"] == .bool(true))
        }
    }

    /// libpq sends text parameters as C strings, so a NUL would cut the value short. PostgreSQL
    /// text cannot hold NUL: the call must fail, never store a shortened value.
    @Test func textWithNulIsRejectedNotTruncated() async throws {
        try await withPostgres { db in
            let value = "before\u{0}after"
            do {
                let rows = try await db.query("SELECT $1::text AS v", [.text(value)])
                // Regression: text parameters travel as C strings, so a NUL used to cut the value
                // short silently ("before" came back). Such values must be refused instead.
                Issue.record("text with a NUL byte was accepted and came back as \(rows.first?["v"] ?? .null)")
            } catch let error as DatabaseError {
                #expect(error.code == .queryFailed || error.code == .misuse)
            }
        }
    }

    // MARK: Prepared statements

    @Test func theSameStatementIsPreparedOnceAndReused() async throws {
        try await withPostgres { db in
            let sql = "SELECT $1::bigint * 2 AS doubled"
            var results: [SQLValue] = []
            for value in 0..<300 { results.append(try await db.query(sql, [.integer(Int64(value))]).first?["doubled"] ?? .null) }
            #expect(results == (0..<300).map { .integer(Int64($0 * 2)) })
            let prepared = try await db.query("SELECT count(*) AS n FROM pg_prepared_statements WHERE statement = $1", [.text(sql)])
            #expect(prepared.first?["n"] == .integer(1), "300 runs of one statement should use one prepared statement")
        }
    }

    @Test func moreDistinctStatementsThanTheCacheHoldsStillWork() async throws {
        let cacheSize = 8
        try await withPostgres({ $0.preparedStatementCacheSize = cacheSize }) { db in
            let statements = (1...30).map { "SELECT $1::bigint + \($0) AS v" }
            for _ in 0..<2 {
                var results: [SQLValue] = []
                for sql in statements { results.append(try await db.query(sql, [.integer(100)]).first?["v"] ?? .null) }
                #expect(results == (1...30).map { .integer(100 + Int64($0)) })
            }
            let prepared = try await db.query("SELECT count(*) AS n FROM pg_prepared_statements")
            let count = try #require(prepared.first?["n"].int)
            #expect((1...cacheSize).contains(count), "\(count) prepared statements with a cache of \(cacheSize)")
        }
    }

    // MARK: Errors

    @Test func errorsCarryTheSQLState() async throws {
        try await withPostgres { db in
            let table = uniqueName("uniq")
            try await db.execute("CREATE TEMP TABLE \(table) (id bigint PRIMARY KEY)")
            let insert = "INSERT INTO \(table) (id) VALUES ($1)"
            #expect(try await db.update(insert, [1]) == 1)

            let duplicate = try await #require(throws: DatabaseError.self) { try await db.update(insert, [1]) }
            #expect(duplicate.code == .queryFailed)
            #expect(duplicate.sqlState == "23505")
            #expect(duplicate.isUniqueViolation)
            #expect(!duplicate.isTransient)
            #expect(duplicate.statement == insert)

            let missing = uniqueName("missing")
            let undefined = try await #require(throws: DatabaseError.self) { try await db.query("SELECT * FROM \(missing)") }
            #expect(undefined.code == .queryFailed)
            #expect(undefined.sqlState == "42P01")
            #expect(!undefined.isUniqueViolation)
            let undefinedSimple = try await #require(throws: DatabaseError.self) { try await db.execute("DELETE FROM \(missing)") }
            #expect(undefinedSimple.code == .queryFailed)
            #expect(undefinedSimple.sqlState == "42P01")

            let syntax = try await #require(throws: DatabaseError.self) { try await db.query("SELEC $1::int", [1]) }
            #expect(syntax.code == .queryFailed)
            #expect(syntax.sqlState == "42601")
            let syntaxSimple = try await #require(throws: DatabaseError.self) { try await db.execute("SELEC 1") }
            #expect(syntaxSimple.sqlState == "42601")
            #expect(syntaxSimple.description.contains("42601"))

            // The connection survives its errors, and a statement that failed to prepare was not
            // cached: once the table exists, the same SQL works.
            #expect(try await db.query("SELECT 1 AS one").first?["one"] == .integer(1))
            #expect(await db.isUsable)
            try await db.execute("CREATE TEMP TABLE \(missing) (x int)")
            #expect(try await db.query("SELECT * FROM \(missing)").isEmpty)
        }
    }

    @Test func updateReportsAffectedRows() async throws {
        try await withPostgres { db in
            let table = uniqueName("affected")
            try await db.execute("CREATE TEMP TABLE \(table) (id int, flag boolean)")
            #expect(try await db.update("INSERT INTO \(table) SELECT g, false FROM generate_series(1, 5) g") == 5)
            #expect(try await db.update("UPDATE \(table) SET flag = $1 WHERE id <= $2", [true, 3]) == 3)
            #expect(try await db.update("DELETE FROM \(table) WHERE id > $1", [100]) == 0)
            #expect(try await db.update("DELETE FROM \(table) WHERE flag") == 3)
        }
    }

    @Test func statementTimeoutCancelsLongStatements() async throws {
        try await withPostgres({ $0.statementTimeout = .milliseconds(200) }) { db in
            let start = ContinuousClock.now
            let error = try await #require(throws: DatabaseError.self) { try await db.query("SELECT pg_sleep(5)") }
            #expect(error.code == .queryFailed)
            #expect(error.sqlState == "57014")
            #expect(ContinuousClock.now - start < .seconds(3))
            #expect(try await db.query("SELECT 1 AS one").first?["one"] == .integer(1))
        }
    }

    @Test("every TCP connection has keepalives and a user timeout, from the defaults or the URL")
    func tcpKeepalivesAndUserTimeout() async throws {
        try await withPostgres { db in
            let settings = try #require(await db.tcpSettings, "the test server is reached over TCP")
            #expect(settings == PostgresTCPSettings(keepalive: true, idleSeconds: 30, intervalSeconds: 10, count: 3, userTimeoutMilliseconds: 30_000))
        }
        try await withPostgres({ $0.tcpUserTimeout = nil; $0.keepalivesIdleSeconds = 45 }) { db in
            let settings = try #require(await db.tcpSettings)
            #expect(settings.keepalive && settings.idleSeconds == 45 && settings.userTimeoutMilliseconds == 0)
        }
        // The URL's parameters win over the defaults.
        let url = try PostgresTestServer.url()
        let separator = url.contains("?") ? "&" : "?"
        let db = try await PostgresConnection.connect(url: url + separator + "keepalives_idle=7&tcp_user_timeout=5000")
        let settings = await db.tcpSettings
        await db.close()
        #expect(settings?.idleSeconds == 7 && settings?.userTimeoutMilliseconds == 5000, "\(String(describing: settings))")
    }

    // MARK: Transactions

    @Test func transactionCommitsWhenTheBodyReturns() async throws {
        try await withPostgres { db in
            try await withPostgres { other in
                try await withScratchTable("id bigint PRIMARY KEY, note text", on: db) { table in
                    let count = "SELECT count(*) AS n FROM \(table)"
                    let result = try await db.transaction { tx in
                        let inside = tx.inTransaction
                        #expect(inside)
                        try tx.update("INSERT INTO \(table) (id, note) VALUES ($1, $2)", [1, "one"])
                        // Not visible elsewhere before COMMIT.
                        #expect(try await other.query(count).first?["n"] == .integer(0))
                        return "committed"
                    }
                    #expect(result == "committed")
                    #expect(await db.inTransaction == false)
                    #expect(try await other.query(count).first?["n"] == .integer(1))

                    let isolation = try await db.transaction(isolation: .serializable) { tx in
                        try tx.query("SHOW transaction_isolation").first?["transaction_isolation"]
                    }
                    #expect(isolation == .text("serializable"))

                    // REPEATABLE READ: one snapshot for the whole transaction, even while another
                    // connection commits.
                    let snapshot = try await db.transaction(isolation: .repeatableRead) { tx in
                        let before = try tx.query(count).first?["n"]
                        try await other.update("INSERT INTO \(table) (id, note) VALUES ($1, $2)", [2, "two"])
                        let after = try tx.query(count).first?["n"]
                        return [before, after]
                    }
                    #expect(snapshot == [.integer(1), .integer(1)])
                    #expect(try await db.query(count).first?["n"] == .integer(2))
                }
            }
        }
    }

    @Test func transactionRollsBackWhenTheBodyThrows() async throws {
        try await withPostgres { db in
            let table = uniqueName("rollback")
            try await db.execute("CREATE TEMP TABLE \(table) (id bigint PRIMARY KEY)")
            try await db.update("INSERT INTO \(table) (id) VALUES (1)")
            await #expect(throws: ExpectedFailure(tag: "rollback")) {
                try await db.transaction { tx in
                    try tx.update("INSERT INTO \(table) (id) VALUES (2)")
                    try tx.update("DELETE FROM \(table) WHERE id = 1")
                    throw ExpectedFailure(tag: "rollback")
                }
            }
            let ids = try await db.query("SELECT id FROM \(table) ORDER BY id").map { $0["id"] }
            #expect(ids == [.integer(1)])
            #expect(await db.inTransaction == false)
            #expect(await db.isUsable)
        }
    }

    @Test func aFailedStatementAbortsTheTransactionAndCommitThrows() async throws {
        try await withPostgres { db in
            let table = uniqueName("aborted")
            try await db.execute("CREATE TEMP TABLE \(table) (id bigint PRIMARY KEY)")
            let error = try await #require(throws: DatabaseError.self) {
                try await db.transaction { tx in
                    try tx.update("INSERT INTO \(table) (id) VALUES (1)")
                    let failure = #expect(throws: DatabaseError.self) { try tx.query("SELECT * FROM \(uniqueName("missing"))") }
                    #expect(failure?.sqlState == "42P01")
                    // Caught and ignored: the server has aborted the transaction anyway.
                    let refused = #expect(throws: DatabaseError.self) { try tx.query("SELECT 1") }
                    #expect(refused?.sqlState == "25P02")
                    return 0
                }
            }
            #expect(error.code == .queryFailed)
            #expect(error.sqlState == "25P02")
            #expect(try await db.query("SELECT count(*) AS n FROM \(table)").first?["n"] == .integer(0))
            #expect(await db.inTransaction == false)
            #expect(await db.isUsable)
        }
    }

    @Test func nestedTransactionsAreMisuse() async throws {
        try await withPostgres { db in
            let table = uniqueName("nested")
            try await db.execute("CREATE TEMP TABLE \(table) (id bigint PRIMARY KEY)")
            try await db.transaction { tx in
                try tx.update("INSERT INTO \(table) (id) VALUES (1)")
                let nested = await #expect(throws: DatabaseError.self) {
                    try await tx.transaction { inner in try inner.update("INSERT INTO \(table) (id) VALUES (2)") }
                }
                #expect(nested?.code == .misuse)
                let stillInside = tx.inTransaction
                #expect(stillInside)
            }
            // The outer transaction committed; the nested body never ran.
            let ids = try await db.query("SELECT id FROM \(table) ORDER BY id").map { $0["id"] }
            #expect(ids == [.integer(1)])
        }
    }

    // MARK: LISTEN / NOTIFY

    @Test func notificationsTravelBetweenConnections() async throws {
        try await withPostgres { listener in
            try await withPostgres { sender in
                let channel = uniqueName("chan")
                let oddChannel = "Odd \"Chan\" " + uniqueName("x")
                try await listener.listen(channel)
                try await listener.listen(oddChannel)
                try await sender.notify(uniqueName("unheard"), payload: "nobody listens")
                try await sender.notify(channel, payload: "hello, 'world' 👋")
                try await sender.notify(oddChannel)

                let received = try await collectNotifications(on: listener) { $0.count >= 2 }
                #expect(received.count == 2)
                let senderPID = await sender.backendPID
                #expect(received.map(\.channel) == [channel, oddChannel])
                #expect(received.map(\.payload) == ["hello, 'world' 👋", ""])
                #expect(received.map(\.senderPID) == [senderPID, senderPID])

                try await listener.unlisten(channel)
                try await sender.notify(channel, payload: "after unlisten")
                try await sender.notify(oddChannel, payload: "marker")
                let later = try await collectNotifications(on: listener) { $0.contains { $0.payload == "marker" } }
                #expect(later.map(\.payload) == ["marker"])
            }
        }
    }

    @Test func notificationsOfARolledBackTransactionNeverArrive() async throws {
        try await withPostgres { listener in
            try await withPostgres { sender in
                let channel = uniqueName("chan")
                try await listener.listen(channel)
                await #expect(throws: ExpectedFailure.self) {
                    try await sender.transaction { tx in
                        try tx.notify(channel, payload: "rolled back")
                        throw ExpectedFailure(tag: "abort")
                    }
                }
                try await sender.transaction { tx in
                    try tx.notify(channel, payload: "committed")
                    // Delivered at COMMIT, not before.
                    let early = try await listener.waitForNotifications(timeout: .milliseconds(200))
                    #expect(early.isEmpty, "a notification arrived before its transaction committed: \(early)")
                }
                try await sender.notify(channel, payload: "marker")
                let received = try await collectNotifications(on: listener) { $0.contains { $0.payload == "marker" } }
                #expect(received.map(\.payload) == ["committed", "marker"])
            }
        }
    }

    @Test func waitForNotificationsReturnsNothingAfterItsTimeout() async throws {
        try await withPostgres { listener in
            try await listener.listen(uniqueName("silent"))
            let start = ContinuousClock.now
            let received = try await listener.waitForNotifications(timeout: .milliseconds(400))
            let elapsed = ContinuousClock.now - start
            #expect(received.isEmpty)
            #expect(elapsed >= .milliseconds(350), "returned after \(elapsed), before the 400 ms timeout")
            #expect(elapsed < .seconds(3))
        }
    }

    // MARK: COPY

    @Test func copyOutStreamsTheResultInChunks() async throws {
        try await withPostgres { db in
            let rowCount = 100_000
            let chunkSize = 64 * 1024
            let chunks = LockedBox<[[UInt8]]>([])
            let total = try await db.copyOut(
                "COPY (SELECT g, md5(g::text) FROM generate_series(1, \(rowCount)) g ORDER BY g) TO STDOUT", chunkSize: chunkSize
            ) { chunk in
                chunks.withLock { $0.append(chunk) }
            }
            let received = chunks.withLock { $0 }
            // Each line is "<g>\t<32 hex digits>\n": the digits of 1...100000 plus 34 bytes a line.
            let digits = (1...rowCount).reduce(0) { $0 + String($1).count }
            let expectedBytes = digits + 34 * rowCount
            #expect(total == expectedBytes)
            #expect(received.reduce(0) { $0 + $1.count } == expectedBytes)
            #expect(received.count >= expectedBytes / chunkSize, "\(received.count) chunks")
            #expect(received.dropLast().allSatisfy { $0.count >= chunkSize })

            let lines = String(decoding: Array(received.joined()), as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
            #expect(lines.count == rowCount + 1)
            #expect(lines.last == "")
            let hashes = try await db.query("SELECT md5(g::text) AS h FROM generate_series(1, \(rowCount)) g ORDER BY g")
                .map { $0["h"].string ?? "" }
            #expect(hashes.count == rowCount)
            var mismatches: [String] = []
            for (index, line) in lines.dropLast().enumerated() where index < hashes.count {
                if line != "\(index + 1)\t\(hashes[index])" { mismatches.append(String(line)) }
            }
            #expect(mismatches.isEmpty, "\(mismatches.count) lines differ, first: \(mismatches.first ?? "")")
            #expect(try await db.query("SELECT 1 AS one").first?["one"] == .integer(1))
        }
    }

    @Test func copyOutRejectsStatementsThatAreNotCopy() async throws {
        try await withPostgres { db in
            let notCopy = try await #require(throws: DatabaseError.self) {
                try await db.copyOut("SELECT 1") { _ in Issue.record("no data expected") }
            }
            #expect(notCopy.code == .copyFailed)
            let missing = try await #require(throws: DatabaseError.self) {
                try await db.copyOut("COPY \(uniqueName("missing")) TO STDOUT") { _ in Issue.record("no data expected") }
            }
            #expect(missing.code == .queryFailed)
            #expect(missing.sqlState == "42P01")
            #expect(try await db.query("SELECT 1 AS one").first?["one"] == .integer(1))
        }
    }

    /// A consumer may give up on a COPY (for example the HTTP client that the export streams to
    /// went away). The connection must stay usable for the next statement.
    @Test func copyOutWhoseConsumerThrowsLeavesTheConnectionUsable() async throws {
        try await withPostgres { db in
            let calls = LockedBox(0)
            await #expect(throws: ExpectedFailure(tag: "consumer gave up")) {
                try await db.copyOut("COPY (SELECT g FROM generate_series(1, 200000) g) TO STDOUT", chunkSize: 4096) { _ in
                    calls.withLock { $0 += 1 }
                    throw ExpectedFailure(tag: "consumer gave up")
                }
            }
            #expect(calls.withLock { $0 } == 1)
            // copyOut rethrows with the COPY still streaming; libpq's next blocking call discards
            // the rest of it. The connection must answer normally (and promptly).
            let after = await outcome(within: .seconds(10)) { try await db.query("SELECT 1 AS one") }
            switch after {
            case .success(let rows)?: #expect(rows.first?["one"] == .integer(1))
            case .failure(let error)?: Issue.record("the connection is unusable after an abandoned COPY: \(error)")
            case nil: Issue.record("the first statement after an abandoned COPY never returned")
            }
        }
    }

    @Test func copyInStreamsChunksIntoATable() async throws {
        try await withPostgres { db in
            let table = uniqueName("copyin")
            try await db.execute("CREATE TEMP TABLE \(table) (id bigint PRIMARY KEY, name text)")
            let rowCount = 20_000
            let data = Array((1...rowCount).map { "\($0)\tname \($0) ü\n" }.joined().utf8)
            // 999-byte chunks: lines and even a UTF-8 sequence get split across chunks.
            let chunks = stride(from: 0, to: data.count, by: 999).map { Array(data[$0..<min($0 + 999, data.count)]) }
            #expect(chunks.count > 100)
            let source = AsyncStream<[UInt8]> { continuation in
                for chunk in chunks { continuation.yield(chunk) }
                continuation.finish()
            }
            let copied = try await db.copyIn("COPY \(table) (id, name) FROM STDIN", from: source)
            #expect(copied == rowCount)
            let summary = try await db.query("SELECT count(*) AS n, sum(id) AS total FROM \(table)")
            #expect(summary.first?["n"] == .integer(Int64(rowCount)))
            #expect(summary.first?["total"].int == rowCount * (rowCount + 1) / 2)
            let sample = try await db.query("SELECT name FROM \(table) WHERE id = $1", [777])
            #expect(sample.first?["name"] == .text("name 777 ü"))
        }
    }

    @Test func copyInWhoseSourceThrowsWritesNothing() async throws {
        try await withPostgres { db in
            let table = uniqueName("copyabort")
            try await db.execute("CREATE TEMP TABLE \(table) (id bigint PRIMARY KEY, note text)")
            let source = AsyncThrowingStream<[UInt8], any Error> { continuation in
                for id in 1...500 { continuation.yield(Array("\(id)\tsent before the failure\n".utf8)) }
                continuation.finish(throwing: ExpectedFailure(tag: "source broke"))
            }
            await #expect(throws: ExpectedFailure(tag: "source broke")) {
                try await db.copyIn("COPY \(table) (id, note) FROM STDIN", from: source)
            }
            #expect(try await db.query("SELECT count(*) AS n FROM \(table)").first?["n"] == .integer(0))
            #expect(await db.isUsable)

            // Bad data: the server's error comes back, nothing is written either.
            let bad = AsyncStream<[UInt8]> { continuation in
                continuation.yield(Array("1\tfine\nnot-a-number\toops\n".utf8))
                continuation.finish()
            }
            let error = try await #require(throws: DatabaseError.self) {
                try await db.copyIn("COPY \(table) (id, note) FROM STDIN", from: bad)
            }
            #expect(error.code == .queryFailed)
            #expect(error.sqlState == "22P02")
            #expect(try await db.query("SELECT count(*) AS n FROM \(table)").first?["n"] == .integer(0))

            // And the connection still copies.
            let good = AsyncStream<[UInt8]> { continuation in
                continuation.yield(Array("1\tone\n2\ttwo\n".utf8))
                continuation.finish()
            }
            #expect(try await db.copyIn("COPY \(table) (id, note) FROM STDIN", from: good) == 2)
        }
    }

    // MARK: Connection failures

    @Test func connectingToADeadPortFails() async throws {
        var configuration = PostgresConfiguration()
        configuration.connectTimeoutSeconds = 3
        let start = ContinuousClock.now
        let error = try await #require(throws: DatabaseError.self) {
            try await PostgresConnection.connect(url: "postgres://postgres@127.0.0.1:1/postgres", configuration: configuration)
        }
        #expect(error.code == .connectionFailed)
        #expect(error.isTransient)
        #expect(!error.message.isEmpty)
        #expect(ContinuousClock.now - start < .seconds(5))
    }

    @Test func terminatedBackendIsReportedAsClosedAndTransient() async throws {
        try await withPostgres { admin in
            let victim = try await PostgresTestServer.connect()
            #expect(try await victim.query("SELECT 1 AS one").first?["one"] == .integer(1))
            let pid = await victim.backendPID
            #expect(pid > 0)
            let killed = try await admin.query("SELECT pg_terminate_backend($1::int, 5000) AS killed", [.integer(Int64(pid))])
            #expect(killed.first?["killed"] == .bool(true))

            let error = try await #require(throws: DatabaseError.self) { try await victim.query("SELECT 1 AS one") }
            #expect(error.code == .connectionClosed)
            #expect(error.isTransient)
            #expect(await victim.isUsable == false)
            let again = try await #require(throws: DatabaseError.self) { try await victim.execute("SELECT 1") }
            #expect(again.code == .connectionClosed)
            await victim.close()
        }
    }

    /// Closing is final, but a late call on a closed connection must fail, not wait forever.
    @Test func callsAfterCloseFailWithConnectionClosed() async throws {
        let db = try await PostgresTestServer.connect()
        await db.close()
        try await Task.sleep(for: .milliseconds(100))
        // Regression: close() shuts the executor down; a call made after its thread exited used
        // to hang forever instead of throwing .connectionClosed.
        let result = try #require(
            await outcome(within: .seconds(3)) { try await db.query("SELECT 1") },
            "a call on a closed PostgresConnection never returned")
        switch result {
        case .success: Issue.record("a closed connection ran a query")
        case .failure(let error): #expect((error as? DatabaseError)?.code == .connectionClosed)
        }
    }
}

/// Waits (up to `timeout`) until the notifications received satisfy `done`, and returns them all.
func collectNotifications(
    on listener: PostgresConnection, timeout: Duration = .seconds(10),
    until done: ([PostgresConnection.Notification]) -> Bool
) async throws -> [PostgresConnection.Notification] {
    var received: [PostgresConnection.Notification] = []
    let deadline = ContinuousClock.now + timeout
    while !done(received), ContinuousClock.now < deadline {
        received += try await listener.waitForNotifications(timeout: .milliseconds(250))
    }
    return received
}
