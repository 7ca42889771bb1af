import CaseData
import CaseDatabase
import DatabaseSupport
import ExchangerTestSupport
import Foundation
import SQLiteClient
import Testing

/// The value's bytes as the database holds them, upper-case hex (PostgreSQL: its UTF-8 encoding;
/// SQLite: `hex()`), and its storage type.
private func storedText(_ connection: TestCaseConnection, _ table: String, _ column: String, id: Int64) async throws -> (hex: String?, type: String?) {
    let sql = connection.isPostgres
        ? "SELECT upper(encode(convert_to(\(column), 'UTF8'), 'hex')) AS h, pg_typeof(\(column))::text AS t FROM \(table) WHERE id = $1"
        : "SELECT hex(\(column)) AS h, typeof(\(column)) AS t FROM \(table) WHERE id = $1"
    let row = try #require(try await connection.query(sql, [.integer(id)]).first)
    return (row["h"].string, row["t"].string)
}

@Suite("Case-data copy fidelity")
struct CopyFidelityTests {
    /// Text that is not valid UTF-8 (SQLite only: PostgreSQL's UTF8 databases refuse it) and text
    /// with characters a lossy decoder would confuse with it (both): `caf` + 0xE9, and a genuine
    /// U+FFFD among other characters.
    @Test("text values and merge names travel as the bytes they are", arguments: Backend.allCases)
    func textKeepsItsBytes(backend: Backend) async throws {
        try await withCaseDatabases(backend) { databases in
            try await seedPair(databases, source: 501, destination: 502, documents: 10)
            let source = try await TestCaseConnection.open(databases, caseID: 501)
            let destination = try await TestCaseConnection.open(databases, caseID: 502)
            // (hex written, hex expected in the destination) per value.
            let title = source.isPostgres ? "636166C3A920E29883F09D849E20EFBFBD" : "636166E9"
            let note = source.isPostgres ? "6E6F7465EFBFBD" : "6E6F7465E9"
            let category = source.isPostgres ? "636174C3A9" : "636174E9"
            func literal(_ hex: String) -> String {
                source.isPostgres ? "convert_from(decode('\(hex)', 'hex'), 'UTF8')" : "CAST(X'\(hex)' AS TEXT)"
            }
            try await source.query("UPDATE documents SET title = \(literal(title)) WHERE id = 2")
            try await source.query("INSERT INTO custom_fields (id, name, field_type) VALUES (500, 'Fidelity Note', 'text')")
            try await source.query(
                "INSERT INTO custom_field_values (id, custom_field_id, document_id, text_value) VALUES (5000, 500, 2, \(literal(note)))")
            try await source.query("INSERT INTO label_categories (id, name) VALUES (500, \(literal(category)))")
            let label = try #require(try await source.ids("SELECT min(id) FROM labels").first)
            try await source.query(
                "INSERT INTO label_category_labels (id, label_category_id, label_id, document_id) VALUES (5000, 500, \(label), 2)")
            // The destination has a category whose name is what a lossy decoder makes of the
            // source's (U+FFFD in place of the invalid byte): the two must not be merged.
            try await destination.query("INSERT INTO label_categories (id, name) VALUES (900, \(literal("636174EFBFBD")))")

            _ = try await CaseDataCopier(databases: databases).copy(
                sourceCase: 501, destinationCase: 502, selection: .documentIDs([2, 3]), jobID: "bytes")
            let map = try await idMap(destination, job: "bytes")
            let document = try #require(map["documents"]?[2])
            let copiedTitle = try await storedText(destination, "documents", "title", id: document)
            #expect(copiedTitle.hex == title)
            #expect(copiedTitle.type == "text")
            let value = try #require(map["custom_field_values"]?[5000])
            #expect(try await storedText(destination, "custom_field_values", "text_value", id: value).hex == note)
            let mergedCategory = try #require(map["label_categories"]?[500])
            #expect(mergedCategory != 900, "a name with other bytes is another category")
            #expect(try await storedText(destination, "label_categories", "name", id: mergedCategory).hex == category)
            await source.close()
            await destination.close()
        }
    }

    @Test("the SQLite client refuses to hand out text that is not valid UTF-8, instead of substituting U+FFFD")
    func sqliteClientRefusesInvalidText() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("exch-utf8-\(UUID().uuidString).sqlite").path
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        let connection = try await SQLiteConnection.open(path: path)
        let error = await #expect(throws: DatabaseError.self) {
            try await connection.query("SELECT CAST(X'636166e9' AS TEXT) AS title")
        }
        #expect(error?.code == .decoding)
        #expect(error?.message.contains("not valid UTF-8") == true)
        // The same value as bytes, and valid text, are returned.
        #expect(try await connection.query("SELECT CAST(CAST(X'636166e9' AS TEXT) AS BLOB) AS b").first?["b"] == .blob([0x63, 0x61, 0x66, 0xE9]))
        #expect(try await connection.query("SELECT 'café' AS t").first?["t"] == .text("café"))
        await connection.close()
    }

    @Test("a source exhibit id above 2^53 is stored exactly, as decimal text in a text field", arguments: Backend.allCases)
    func sourceExhibitIDIsExact(backend: Backend) async throws {
        try await withCaseDatabases(backend) { databases in
            try await seedPair(databases, source: 511, destination: 512, documents: 10)
            let source = try await TestCaseConnection.open(databases, caseID: 511)
            let big: Int64 = 9_007_199_254_740_993  // 2^53 + 1: a double holds 2^53 instead
            try await source.query("INSERT INTO documents (id, control_number, file_name) VALUES (50, 'BIG-1', 'big.pdf')")
            try await source.query("INSERT INTO exhibits (id, document_id, exhibit_number) VALUES (\(big), 50, 'EX-BIG')")
            let report = try await CaseDataCopier(databases: databases).copy(
                sourceCase: 511, destinationCase: 512, selection: .documentIDs([2, 50]), jobID: "big-id")
            let mapping = try #require(report.documents.first { $0.sourceDocumentID == 50 })
            #expect(mapping.sourceExhibitID == big)
            let exhibit = try #require(mapping.destinationExhibitID)
            let destination = try await TestCaseConnection.open(databases, caseID: 512)
            let field = try #require(try await destination.query("SELECT id, field_type FROM custom_fields WHERE name = 'Source Exhibit ID'").first)
            #expect(field["field_type"] == .text("text"))
            let values = try await destination.query(
                "SELECT text_value, number_value FROM custom_field_values WHERE custom_field_id = $1 AND exhibit_id = $2",
                [field["id"], .integer(exhibit)])
            #expect(values.map { $0["text_value"] } == [.text("9007199254740993")])
            #expect(values.map { $0["number_value"] } == [.null])
            await source.close()
            await destination.close()
        }
    }

    @Test("a custom field merged by name with another type fails the copy before anything is written", arguments: Backend.allCases)
    func customFieldTypeClash(backend: Backend) async throws {
        try await withCaseDatabases(backend) { databases in
            try await seedPair(databases, source: 521, destination: 522, documents: 10)
            let destination = try await TestCaseConnection.open(databases, caseID: 522)
            let copier = CaseDataCopier(databases: databases)
            // `Amount` is a number field in the source (with values on every document), text here.
            try await destination.query("UPDATE custom_fields SET field_type = 'text' WHERE name = 'Amount'")
            let before = try await tableCounts(destination)
            let amount = await #expect(throws: CaseDataError.self) {
                try await copier.copy(sourceCase: 521, destinationCase: 522, selection: .documentIDs([1, 2, 3]), jobID: "clash-amount")
            }
            #expect(amount?.code == .conflict)
            #expect(amount?.message.contains("custom_fields 'Amount' has field_type 'number' in the source and 'text' in the destination") == true, "\(String(describing: amount))")
            #expect(try await tableCounts(destination) == before, "nothing written")
            #expect(try await destination.count("exchange_id_map", "job_id = 'clash-amount'") == 0)
            #expect(try await destination.count("exchange_copy_checkpoints", "job_id = 'clash-amount'") == 0)
            // The source-exhibit-id field exists with the type date.
            try await destination.query("UPDATE custom_fields SET field_type = 'number' WHERE name = 'Amount'")
            try await destination.query("INSERT INTO custom_fields (name, field_type) VALUES ('Source Exhibit ID', 'date')")
            let dated = try await tableCounts(destination)
            let exhibitField = await #expect(throws: CaseDataError.self) {
                try await copier.copy(sourceCase: 521, destinationCase: 522, selection: .documentIDs([1, 2, 3]), jobID: "clash-exhibit")
            }
            #expect(exhibitField?.code == .conflict)
            #expect(exhibitField?.message.contains("'Source Exhibit ID' is of type 'date'") == true, "\(String(describing: exhibitField))")
            #expect(try await tableCounts(destination) == dated, "nothing written")
            // With the types agreeing the same copy goes through.
            try await destination.query("DELETE FROM custom_fields WHERE name = 'Source Exhibit ID'")
            let report = try await copier.copy(sourceCase: 521, destinationCase: 522, selection: .documentIDs([1, 2, 3]), jobID: "clash-fixed")
            #expect(report.documents.count == 3)
            await destination.close()
        }
    }

    /// Writes a reference to a row that does not exist, past the foreign-key checks.
    private func breakReference(_ connection: TestCaseConnection, _ sql: String) async throws {
        if connection.isPostgres {
            try await connection.execute("SET session_replication_role = replica")
            try await connection.query(sql)
            try await connection.execute("SET session_replication_role = origin")
        } else {
            try await connection.execute("PRAGMA foreign_keys = OFF")
            try await connection.query(sql)
            try await connection.execute("PRAGMA foreign_keys = ON")
        }
    }

    @Test("documents with a broken reference are left out by name, the rest copied at once", arguments: Backend.allCases)
    func brokenReferenceExcludesTheDocument(backend: Backend) async throws {
        try await withCaseDatabases(backend) { databases in
            try await seedPair(databases, source: 531, destination: 532, documents: 10)
            let source = try await TestCaseConnection.open(databases, caseID: 531)
            try await breakReference(source, "UPDATE documents SET custodian_id = 777777 WHERE id = 4")
            // Below a document: a label link to a label that does not exist.
            let link = try #require(try await source.ids("SELECT min(id) FROM label_category_labels WHERE document_id = 6").first)
            try await breakReference(source, "UPDATE label_category_labels SET label_id = 888888 WHERE id = \(link)")
            let name4 = try #require(try await source.query("SELECT control_number FROM documents WHERE id = 4").first?["control_number"].string)
            // One run, no error: the broken references are found before anything is written.
            let report = try await CaseDataCopier(databases: databases).copy(
                sourceCase: 531, destinationCase: 532, selection: .documentIDs([3, 4, 5, 6, 7]), jobID: "broken")
            #expect(report.documents.map(\.sourceDocumentID).sorted() == [3, 5, 7])
            #expect(report.excludedDocuments.map(\.sourceDocumentID) == [4, 6])
            let four = try #require(report.excludedDocuments.first)
            #expect(four.name == name4)
            #expect(four.reason == "documents row 4: custodian_id = 777777 references no custodians row")
            #expect(report.excludedDocuments.last?.reason == "label_category_labels row \(link): label_id = 888888 references no labels row")
            let destination = try await TestCaseConnection.open(databases, caseID: 532)
            try await verifyExactCopy(source: source, destination: destination, job: "broken", documents: [3, 5, 7])
            await source.close()
            await destination.close()
        }
    }

    @Test("a copy that fails for good leaves none of its rows behind, and a new job copies them once", arguments: Backend.allCases)
    func failedCopyIsUndone(backend: Backend) async throws {
        try await withCaseDatabases(backend) { databases in
            try await seedPair(databases, source: 541, destination: 542, documents: 10)
            let destination = try await TestCaseConnection.open(databases, caseID: 542)
            let before = try await tableCounts(destination)
            struct Stop: Error {}
            // The first run stops after batches and custodians committed.
            let stopping = CaseDataCopier(databases: databases, afterTable: { table, _ in if table == "custodians" { throw Stop() } })
            let selection = CaseDocumentSelection.documentIDs([1, 2, 3])
            await #expect(throws: Stop.self) {
                try await stopping.copy(sourceCase: 541, destinationCase: 542, selection: selection, jobID: "undo")
            }
            #expect(try await tableCounts(destination) != before, "the stopped run left its finished tables for a resume")
            // The source changes under the job: its resumed run cannot finish and is undone.
            let source = try await TestCaseConnection.open(databases, caseID: 541)
            try await source.query("INSERT INTO custodians (id, name) VALUES (900, 'Late Custodian')")
            try await source.query("UPDATE documents SET custodian_id = 900 WHERE id = 2")
            let failure = await #expect(throws: CaseDataError.self) {
                try await CaseDataCopier(databases: databases).copy(sourceCase: 541, destinationCase: 542, selection: selection, jobID: "undo")
            }
            #expect(failure?.code == .inconsistentSource)
            #expect(failure?.message.contains("were removed") == true, "\(String(describing: failure))")
            #expect(try await tableCounts(destination) == before, "no row of the failed job is left")
            for table in ["exchange_id_map", "exchange_copy_checkpoints", "exchange_copy_inserted", "exchange_documents"] {
                #expect(try await destination.count(table, "job_id = 'undo'") == 0, "\(table)")
            }
            // A new job copies everything once.
            let report = try await CaseDataCopier(databases: databases).copy(
                sourceCase: 541, destinationCase: 542, selection: selection, jobID: "undo-2")
            #expect(report.documents.count == 3)
            try await verifyExactCopy(source: source, destination: destination, job: "undo-2", documents: [1, 2, 3])
            await source.close()
            await destination.close()
        }
    }

    @Test("requested ids the source lacks are reported as not found; ids of 2^53 and more are copied exactly", arguments: Backend.allCases)
    func notFoundAndLargeDocumentIDs(backend: Backend) async throws {
        try await withCaseDatabases(backend) { databases in
            try await seedPair(databases, source: 551, destination: 552, documents: 10)
            let source = try await TestCaseConnection.open(databases, caseID: 551)
            let big: Int64 = 9_007_199_254_740_995  // a double rounds it to ...996
            try await source.query("INSERT INTO documents (id, control_number, file_name) VALUES (\(big), 'BIG-DOC', 'big.pdf')")
            let report = try await CaseDataCopier(databases: databases).copy(
                sourceCase: 551, destinationCase: 552, selection: .documentIDs([2, big, 424_242, big + 1]), jobID: "not-found")
            #expect(report.documents.map(\.sourceDocumentID).sorted() == [2, big])
            #expect(report.notFoundDocumentIDs == [424_242, big + 1])
            let destination = try await TestCaseConnection.open(databases, caseID: 552)
            #expect(try await idMap(destination, job: "not-found")["documents"]?[big] != nil)
            await source.close()
            await destination.close()
        }
    }

    @Test("confidentiality bits with no code in the source are reported as a warning", arguments: Backend.allCases)
    func uncodedConfidentialityBits(backend: Backend) async throws {
        try await withCaseDatabases(backend) { databases in
            try await seedPair(databases, source: 561, destination: 562, documents: 10)
            let source = try await TestCaseConnection.open(databases, caseID: 561)
            #expect(try await source.count("confidentiality_codes", "bit_position IN (40, 63)") == 0)
            try await source.query(
                "UPDATE documents SET confidentiality_status = confidentiality_status | 1099511627776 | CAST('-9223372036854775808' AS bigint) WHERE id = 3")
            let report = try await CaseDataCopier(databases: databases).copy(
                sourceCase: 561, destinationCase: 562, selection: .documentIDs([2, 3]), jobID: "bits")
            #expect(report.warnings == [
                "documents.confidentiality_status: bits 40 (1 rows), 63 (1 rows) have no confidentiality code in the source case and are not carried over"
            ])
            await source.close()
        }
    }
}
