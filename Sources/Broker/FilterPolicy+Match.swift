// Matching message attributes against a compiled filter policy. No parsing and, on the common paths
// (set look-ups, byte-wise prefix/suffix, ASCII case-insensitive comparison), no allocation.

extension FilterPolicy {
    /// Whether `attributes` satisfy this policy: every key's conditions (AND across keys, OR within a key)
    /// and, when the policy has `$or`, at least one alternative. Attributes the policy does not name are ignored.
    public func matches(_ attributes: MessageAttributes) -> Bool {
        root.matches(attributes)
    }
}

extension FilterPolicy.Node {
    func matches(_ attributes: MessageAttributes) -> Bool {
        for key in keys where !key.matches(attributes[key.name]) {
            return false
        }
        if alternatives.isEmpty {
            return true
        }
        return alternatives.contains { $0.matches(attributes) }
    }
}

extension FilterPolicy.KeyFilter {
    /// Whether any condition of the key matches `value` (`nil`: the attribute is absent).
    func matches(_ value: MessageAttributeValue?) -> Bool {
        guard let value else {
            return matchesAbsent
        }
        if matchesAnyPresent {
            return true
        }
        switch value {
        case .string(let string):
            return exactStrings.contains(string) || conditions.contains { $0.matches(string: string) }
        case .number(let number):
            return exactNumbers.contains(number) || conditions.contains { $0.matches(number: number) }
        case .stringArray(let strings):
            if !exactStrings.isEmpty, strings.contains(where: { exactStrings.contains($0) }) {
                return true
            }
            return conditions.contains { $0.matches(strings: strings) }
        }
    }
}

extension FilterPolicy.Condition {
    func matches(string: String) -> Bool {
        switch self {
        case .prefix(let prefix):
            return string.utf8.starts(with: prefix.utf8)
        case .suffix(let suffix):
            return string.hasUTF8Suffix(suffix)
        case .equalsIgnoreCase(let lowercased):
            return string.equalsIgnoringCase(lowercased: lowercased)
        case .numeric:
            return false
        case .anythingBut(let excluded):
            return !excluded.contains(string: string)
        }
    }

    func matches(number: Double) -> Bool {
        switch self {
        case .prefix, .suffix, .equalsIgnoreCase:
            return false
        case .numeric(let range):
            return range.contains(number)
        case .anythingBut(let excluded):
            return !excluded.contains(number: number)
        }
    }

    /// A `String.Array` matches when one of its elements does; for `anything-but` that is an element that is
    /// none of the excluded values (SNS semantics), so an empty array never matches.
    func matches(strings: [String]) -> Bool {
        switch self {
        case .numeric:
            return false
        case .prefix, .suffix, .equalsIgnoreCase, .anythingBut:
            return strings.contains { matches(string: $0) }
        }
    }
}

extension FilterPolicy.AnythingBut {
    /// Whether `string` is one of the excluded values. Numbers never exclude a string.
    func contains(string: String) -> Bool {
        switch self {
        case .strings(let strings): return strings.contains(string)
        case .numbers: return false
        case .prefix(let prefix): return string.utf8.starts(with: prefix.utf8)
        case .suffix(let suffix): return string.hasUTF8Suffix(suffix)
        }
    }

    /// Whether `number` is one of the excluded values. Strings, prefixes and suffixes never exclude a number.
    func contains(number: Double) -> Bool {
        switch self {
        case .numbers(let numbers): return numbers.contains(number)
        case .strings, .prefix, .suffix: return false
        }
    }
}

extension FilterPolicy.NumericRange {
    func contains(_ number: Double) -> Bool {
        if let lower {
            guard lower.inclusive ? number >= lower.value : number > lower.value else { return false }
        }
        if let upper {
            guard upper.inclusive ? number <= upper.value : number < upper.value else { return false }
        }
        return true
    }
}

extension String {
    /// Byte-wise (UTF-8) suffix test, without Unicode canonical equivalence, like SNS.
    fileprivate func hasUTF8Suffix(_ suffix: String) -> Bool {
        let bytes = utf8
        let suffixBytes = suffix.utf8
        let count = suffixBytes.count
        guard bytes.count >= count else { return false }
        return bytes.suffix(count).elementsEqual(suffixBytes)
    }

    /// Case-insensitive equality with an already lowercased string; ASCII without allocating, otherwise
    /// by Unicode lowercasing.
    fileprivate func equalsIgnoringCase(lowercased other: String) -> Bool {
        var lhs = utf8.makeIterator()
        var rhs = other.utf8.makeIterator()
        while true {
            switch (lhs.next(), rhs.next()) {
            case (nil, nil):
                return true
            case (let left?, let right?) where left < 0x80 && right < 0x80:
                let lowered = left >= UInt8(ascii: "A") && left <= UInt8(ascii: "Z") ? left | 0x20 : left
                guard lowered == right else { return false }
            case (nil, _?), (_?, nil):
                // Lengths differ; only non-ASCII lowercasing can change byte lengths.
                return !isASCII(self) || !isASCII(other) ? lowercased() == other : false
            default:
                return lowercased() == other
            }
        }
    }
}

private func isASCII(_ string: String) -> Bool {
    string.utf8.allSatisfy { $0 < 0x80 }
}
