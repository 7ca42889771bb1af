/// Statements are written once with PostgreSQL's `$1` placeholders; SQLite spells them `?1`.
public enum SQLPlaceholders {
    /// `$n` → `?n` outside string literals; a `$` not followed by a digit (or inside `'…'`, such as
    /// a JSON path `'$.jobId'`) is left alone.
    public static func sqlite(_ sql: String) -> String {
        var result = ""
        result.reserveCapacity(sql.utf8.count)
        var inString = false
        var previousWasDollar = false
        for character in sql {
            if character == "'" { inString.toggle() }
            if previousWasDollar {
                result.append(character.isNumber ? "?" : "$")
                previousWasDollar = false
            }
            if character == "$", !inString {
                previousWasDollar = true
                continue
            }
            result.append(character)
        }
        if previousWasDollar { result.append("$") }
        return result
    }
}
