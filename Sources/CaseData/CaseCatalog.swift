import DatabaseSupport

/// A single-column foreign key found in the catalog.
struct ForeignKey: Sendable, Hashable {
    var column: String
    var referencedTable: String
    var referencedColumn: String
}

/// A table as the catalog describes it.
struct CatalogTable: Sendable, Hashable {
    var name: String
    /// Insertable columns in catalog order (generated columns left out).
    var columns: [String]
    /// The single-column primary key, nil when the table has none or a composite one.
    var primaryKey: String?
    var foreignKeys: [ForeignKey]
}

/// The tables, columns, primary keys and foreign keys of a case database, read from the catalog
/// (PostgreSQL `pg_constraint` / `pg_attribute`; SQLite `pragma_table_info` / `pragma_foreign_key_list`).
struct CaseCatalog: Sendable {
    var tables: [String: CatalogTable]

    static func load(_ connection: CaseSQLConnection) async throws -> CaseCatalog {
        switch connection.kind {
        case .postgres: try await loadPostgres(connection)
        case .sqlite: try await loadSQLite(connection)
        }
    }

    private static func loadPostgres(_ connection: CaseSQLConnection) async throws -> CaseCatalog {
        var tables: [String: CatalogTable] = [:]
        let columns = try await connection.query("""
            SELECT c.relname AS table_name, a.attname AS column_name
            FROM pg_attribute a
            JOIN pg_class c ON c.oid = a.attrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND a.attnum > 0
              AND NOT a.attisdropped AND a.attgenerated = ''
            ORDER BY c.relname, a.attnum
            """)
        for row in columns {
            guard let table = row["table_name"].string, let column = row["column_name"].string else { continue }
            tables[table, default: CatalogTable(name: table, columns: [], primaryKey: nil, foreignKeys: [])].columns.append(column)
        }
        let keys = try await connection.query("""
            SELECT c.relname AS table_name, a.attname AS column_name
            FROM pg_constraint k
            JOIN pg_class c ON c.oid = k.conrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
            WHERE k.contype = 'p' AND n.nspname = current_schema() AND cardinality(k.conkey) = 1
            """)
        for row in keys {
            guard let table = row["table_name"].string, let column = row["column_name"].string else { continue }
            tables[table]?.primaryKey = column
        }
        let foreign = try await connection.query("""
            SELECT c.relname AS table_name, a.attname AS column_name, rc.relname AS referenced_table, ra.attname AS referenced_column
            FROM pg_constraint k
            JOIN pg_class c ON c.oid = k.conrelid
            JOIN pg_class rc ON rc.oid = k.confrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
            JOIN pg_attribute ra ON ra.attrelid = k.confrelid AND ra.attnum = k.confkey[1]
            WHERE k.contype = 'f' AND n.nspname = current_schema() AND cardinality(k.conkey) = 1
            ORDER BY c.relname, a.attnum
            """)
        for row in foreign {
            guard let table = row["table_name"].string, let column = row["column_name"].string,
                let referenced = row["referenced_table"].string, let referencedColumn = row["referenced_column"].string
            else { continue }
            tables[table]?.foreignKeys.append(ForeignKey(column: column, referencedTable: referenced, referencedColumn: referencedColumn))
        }
        return CaseCatalog(tables: tables)
    }

    private static func loadSQLite(_ connection: CaseSQLConnection) async throws -> CaseCatalog {
        var tables: [String: CatalogTable] = [:]
        let names = try await connection.query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        for nameRow in names {
            guard let name = nameRow["name"].string else { continue }
            var table = CatalogTable(name: name, columns: [], primaryKey: nil, foreignKeys: [])
            var keyColumns: [String] = []
            for row in try await connection.query("SELECT name, pk FROM pragma_table_info($1) ORDER BY cid", [.text(name)]) {
                guard let column = row["name"].string else { continue }
                table.columns.append(column)
                if (row["pk"].int ?? 0) > 0 { keyColumns.append(column) }
            }
            if keyColumns.count == 1 { table.primaryKey = keyColumns[0] }
            let foreign = try await connection.query(
                "SELECT id, seq, \"table\" AS referenced_table, \"from\" AS column_name, \"to\" AS referenced_column FROM pragma_foreign_key_list($1) ORDER BY id, seq",
                [.text(name)])
            // Composite foreign keys (several rows with one id) are not followed.
            let counts = Dictionary(grouping: foreign, by: { $0["id"].int ?? 0 }).mapValues(\.count)
            for row in foreign where counts[row["id"].int ?? 0] == 1 {
                guard let column = row["column_name"].string, let referenced = row["referenced_table"].string else { continue }
                table.foreignKeys.append(ForeignKey(column: column, referencedTable: referenced, referencedColumn: row["referenced_column"].string ?? ""))
            }
            tables[name] = table
        }
        // `REFERENCES t` without a column means t's primary key.
        let primaryKeys = tables.mapValues { $0.primaryKey }
        for (name, table) in tables {
            tables[name]?.foreignKeys = table.foreignKeys.map { key in
                var key = key
                if key.referencedColumn.isEmpty { key.referencedColumn = (primaryKeys[key.referencedTable] ?? nil) ?? "id" }
                return key
            }
        }
        return CaseCatalog(tables: tables)
    }
}

/// The order and shape of one copy, derived from the catalog: which tables hang below the root
/// table (`documents`) and which are parents they need, in topological order.
struct CopyPlan: Sendable {
    /// Every table to copy, parents before children.
    var order: [String]
    /// Tables below the root (the root included): a row is copied when every such parent it
    /// references is copied.
    var downward: Set<String>
    var tables: [String: CatalogTable]

    /// Builds the plan: tables connected to `root` through foreign keys, ordered by Kahn's
    /// algorithm (parents first), ties broken breadth-first from the root, then by name.
    /// - Parameter extraEdges: (parent, child) orderings the post-copy rules need.
    static func make(catalog: CaseCatalog, root: String, excluded: Set<String>, extraEdges: [(String, String)]) throws -> CopyPlan {
        let all = catalog.tables.filter { !excluded.contains($0.key) && !$0.key.hasPrefix("exch_") }
        guard all[root] != nil else { throw CaseDataError(.invalidSchema, "the case database has no table '\(root)'") }
        // Undirected breadth-first distances from the root.
        var neighbours: [String: Set<String>] = [:]
        for table in all.values {
            for key in table.foreignKeys where all[key.referencedTable] != nil && key.referencedTable != table.name {
                neighbours[table.name, default: []].insert(key.referencedTable)
                neighbours[key.referencedTable, default: []].insert(table.name)
            }
        }
        var distance: [String: Int] = [root: 0]
        var queue = [root]
        var head = 0
        while head < queue.count {
            let current = queue[head]
            head += 1
            for next in (neighbours[current] ?? []).sorted() where distance[next] == nil {
                distance[next] = (distance[current] ?? 0) + 1
                queue.append(next)
            }
        }
        let connected = Set(distance.keys)
        var tables: [String: CatalogTable] = [:]
        for name in connected {
            guard let table = all[name] else { continue }
            guard table.primaryKey != nil else {
                throw CaseDataError(.invalidSchema, "table '\(name)' has no single-column primary key; the copy engine needs one")
            }
            tables[name] = table
        }
        // Downward closure: tables referencing a downward table.
        var downward: Set<String> = [root]
        var changed = true
        while changed {
            changed = false
            for table in tables.values where !downward.contains(table.name) {
                if table.foreignKeys.contains(where: { downward.contains($0.referencedTable) && $0.referencedTable != table.name }) {
                    downward.insert(table.name)
                    changed = true
                }
            }
        }
        // Kahn's algorithm.
        var parents: [String: Set<String>] = [:]
        for table in tables.values {
            for key in table.foreignKeys where tables[key.referencedTable] != nil && key.referencedTable != table.name {
                parents[table.name, default: []].insert(key.referencedTable)
            }
        }
        for (parent, child) in extraEdges where tables[parent] != nil && tables[child] != nil {
            parents[child, default: []].insert(parent)
        }
        var order: [String] = []
        var remaining = Set(tables.keys)
        while !remaining.isEmpty {
            let ready = remaining.filter { (parents[$0] ?? []).isDisjoint(with: remaining) }
            guard let next = ready.min(by: { (distance[$0] ?? 0, $0) < (distance[$1] ?? 0, $1) }) else {
                throw CaseDataError(.invalidSchema, "the foreign keys form a cycle among \(remaining.sorted().joined(separator: ", "))")
            }
            order.append(next)
            remaining.remove(next)
        }
        return CopyPlan(order: order, downward: downward, tables: tables)
    }
}
