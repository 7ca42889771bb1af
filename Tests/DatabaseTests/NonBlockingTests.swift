import DatabaseSupport
import Foundation
import PostgresClient
import SQLiteClient
import Testing

/// The key property of the database clients: a blocking libpq / SQLite call blocks only its
/// connection's own thread, never Swift's cooperative pool (one thread per core). While long
/// statements run, a ticker task on the pool keeps ticking every 20 ms, and more long statements
/// than there are cores run at the same time.
@Suite("Database calls never block the cooperative thread pool")
struct NonBlockingTests {
    /// More concurrent blocking calls than the cooperative pool has threads: if the calls ran on
    /// the pool, at most `cores` of them could run at once and the ticker would starve.
    static let oversubscribed = max(4, 2 * ProcessInfo.processInfo.activeProcessorCount)

    @Test func longPostgresQueryLetsOtherTasksRun() async throws {
        try await withPostgres { db in
            let ticker = Ticker()
            defer { ticker.stop() }
            let (rows, measured) = try await ticker.measure { try await db.query("SELECT pg_sleep(2) AS slept") }
            #expect(rows.count == 1)
            #expect(measured.elapsed >= .milliseconds(1_950), "pg_sleep(2) returned early: \(measured.elapsed)")
            // Ideal: 100 ticks in 2 s. Allow for a loaded machine, but a blocked pool gives ~0.
            #expect(measured.ticks >= 40, "the ticker ticked only \(measured.ticks) times during a 2 s query")
            #expect(measured.longestGap < .milliseconds(500), "the ticker stalled for \(measured.longestGap)")
        }
    }

    @Test func moreConcurrentPostgresQueriesThanCoresOverlap() async throws {
        let count = Self.oversubscribed
        let connections = try await withThrowingTaskGroup(of: PostgresConnection.self) { group in
            for _ in 0..<count { group.addTask { try await PostgresTestServer.connect() } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let ticker = Ticker()
        defer { ticker.stop() }
        let outcome = await ticker.measure {
            await withTaskGroup(of: Result<[SQLRow], any Error>.self) { group in
                for connection in connections {
                    group.addTask {
                        do { return .success(try await connection.query("SELECT pg_sleep(1) AS slept")) } catch { return .failure(error) }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
        }
        for connection in connections { await connection.close() }
        let results = outcome.result
        let measured = outcome.measurement
        #expect(results.count == count)
        for result in results {
            if case .failure(let error) = result { Issue.record("a concurrent pg_sleep failed: \(error)") }
        }
        // Serially this takes `count` seconds; on the cooperative pool's threads at least
        // count / cores >= 2 s. Overlapping on their own threads: about 1 s.
        #expect(measured.elapsed >= .milliseconds(950))
        #expect(measured.elapsed < .milliseconds(1_800), "\(count) × pg_sleep(1) took \(measured.elapsed): they did not overlap")
        #expect(measured.ticks >= 20, "the ticker ticked only \(measured.ticks) times")
        #expect(measured.longestGap < .milliseconds(500), "the ticker stalled for \(measured.longestGap)")
    }

    @Test func cpuHeavySQLiteQueryLetsOtherTasksRun() async throws {
        try await withSQLiteDirectory { directory in
            let db = try await SQLiteConnection.open(path: directory + "/cpu.db")
            let sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) SELECT sum(x) AS total FROM c"
            // Calibrate: pick a size that keeps SQLite's thread busy for about 2.5 s on this machine.
            let probe: Int64 = 300_000
            let probeStart = ContinuousClock.now
            let probeRows = try await db.query(sql, [.integer(probe)])
            let probeTime = ContinuousClock.now - probeStart
            #expect(probeRows.first?["total"] == .integer(probe * (probe + 1) / 2))
            var size = Int64(Double(probe) * 2.5 / max(probeTime.inSeconds, 0.001))

            let ticker = Ticker()
            defer { ticker.stop() }
            var measured = Ticker.Measurement(ticks: 0, longestGap: .zero, elapsed: .zero)
            // Machine load changes between the probe and the real run: grow the query if it was short.
            for _ in 0..<3 {
                size = min(Int64(1_000_000_000), max(probe, size))
                let (rows, measurement) = try await ticker.measure { try await db.query(sql, [.integer(size)]) }
                measured = measurement
                #expect(rows.first?["total"] == .integer(size * (size + 1) / 2))
                if measured.elapsed >= .milliseconds(1_500) { break }
                size = Int64(Double(size) * 2.5 / max(measured.elapsed.inSeconds, 0.001))
            }
            await db.close()
            #expect(measured.elapsed >= .seconds(1), "the CPU-heavy query was not long: \(measured.elapsed)")
            let ideal = Int(measured.elapsed.inSeconds / 0.020)
            #expect(measured.ticks >= ideal * 4 / 10, "only \(measured.ticks) of ~\(ideal) ticks during a \(measured.elapsed) query")
            #expect(measured.longestGap < .milliseconds(500), "the ticker stalled for \(measured.longestGap)")
        }
    }

    /// SQLite has no sleep function; a writer waiting for another connection's write lock blocks
    /// in SQLite's busy handler (it sleeps, then retries) for the whole busy timeout.
    @Test func moreBlockedSQLiteWritersThanCoresWaitConcurrently() async throws {
        try await withSQLiteDirectory { directory in
            let path = directory + "/locked.db"
            let holder = try await SQLiteConnection.open(path: path)
            try await holder.execute("CREATE TABLE t (x INTEGER)")
            var configuration = SQLiteConfiguration()
            configuration.busyTimeout = .seconds(1)
            var writers: [SQLiteConnection] = []
            for _ in 0..<Self.oversubscribed { writers.append(try await SQLiteConnection.open(path: path, configuration: configuration)) }
            try await holder.execute("BEGIN IMMEDIATE")

            let ticker = Ticker()
            defer { ticker.stop() }
            let (errors, measured) = await ticker.measure {
                await withTaskGroup(of: (any Error)?.self) { group in
                    for writer in writers {
                        group.addTask {
                            do {
                                try await writer.update("INSERT INTO t (x) VALUES (1)")
                                return nil
                            } catch { return error }
                        }
                    }
                    return await group.reduce(into: [(any Error)?]()) { $0.append($1) }
                }
            }
            try await holder.execute("COMMIT")
            #expect(errors.count == writers.count)
            #expect(errors.allSatisfy { ($0 as? DatabaseError)?.code == .busy }, "every writer should time out with .busy: \(errors)")
            #expect(measured.elapsed >= .milliseconds(950), "writers gave up before the 1 s busy timeout: \(measured.elapsed)")
            #expect(
                measured.elapsed < .milliseconds(1_800),
                "\(writers.count) writers each waiting 1 s took \(measured.elapsed): they did not wait concurrently")
            #expect(measured.ticks >= 20, "the ticker ticked only \(measured.ticks) times")
            #expect(measured.longestGap < .milliseconds(500), "the ticker stalled for \(measured.longestGap)")
            // Once the lock is free, the same writers succeed.
            for writer in writers { #expect(try await writer.update("INSERT INTO t (x) VALUES (2)") == 1) }
            #expect(try await holder.query("SELECT count(*) AS n FROM t").first?["n"] == .integer(Int64(writers.count)))
            for writer in writers { await writer.close() }
            await holder.close()
        }
    }

    @Test func waitingForNotificationsLetsOtherTasksRun() async throws {
        try await withPostgres { listener in
            try await listener.listen(uniqueName("quiet"))
            let ticker = Ticker()
            defer { ticker.stop() }
            let (received, measured) = try await ticker.measure {
                try await listener.waitForNotifications(timeout: .seconds(1))
            }
            #expect(received.isEmpty)
            #expect(measured.elapsed >= .milliseconds(950))
            #expect(measured.ticks >= 20, "the ticker ticked only \(measured.ticks) times")
            #expect(measured.longestGap < .milliseconds(500))
        }
    }
}
