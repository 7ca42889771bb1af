/// An Amazon SNS–style subscription filter policy over message attributes
/// (SNS `FilterPolicyScope: MessageAttributes`).
///
/// A policy is a JSON object. Every key names a message attribute and maps to a non-empty array of
/// conditions; the policy matches when **every** key matches (AND) and a key matches when **any** of its
/// conditions matches (OR):
///
/// ```json
/// {"store": ["example_corp"],
///  "event": [{"anything-but": "order_cancelled"}],
///  "price_usd": [{"numeric": [">=", 100]}]}
/// ```
///
/// Conditions:
/// - `"text"`: exact, case-sensitive match of a `String` attribute or of any element of a `String.Array`.
/// - `5`: numeric equality with a `Number` attribute (`5` matches `5.0`).
/// - `{"prefix": "p"}`, `{"suffix": "s"}` (non-empty operands, compared byte-wise on UTF-8),
///   `{"equals-ignore-case": "t"}`: on a `String` attribute or any element of a `String.Array`.
/// - `{"anything-but": X}` with X a string, a number, a non-empty array of only strings or only numbers,
///   `{"prefix": "p"}` or `{"suffix": "s"}`: matches a present attribute whose value is none of X. As in SNS,
///   a `String.Array` matches when at least one of its elements is none of X (so `["rugby","baseball"]`
///   matches `{"anything-but": ["rugby","tennis"]}`, and an empty array never matches). A value of another
///   type than X's operands is "none of X": `{"anything-but": "a"}` matches the `Number` 5.
/// - `{"numeric": ["=", 5]}`, `{"numeric": [">", 0]}`, `{"numeric": [">=", 0, "<", 100]}`: comparisons
///   with `=`, `<`, `<=`, `>`, `>=` on `Number` attributes only; a range is a lower bound (`>`/`>=`) then an
///   upper bound (`<`/`<=`) with lower ≤ upper.
/// - `{"exists": true}` matches any present attribute, `{"exists": false}` an absent one.
///
/// Every condition but `{"exists": false}` requires the attribute to be present.
///
/// `"$or": [{policy}, {policy}, …]` (at least ``minimumOrAlternatives`` objects, each a policy in its own
/// right, which may nest `$or` again) matches when any alternative matches; it is ANDed with the other keys
/// of its object.
///
/// The policy is parsed, validated and compiled once in ``init(json:)``; ``matches(_:)`` never re-parses.
/// Two policies are equal when their ``json`` texts are equal.
public struct FilterPolicy: Sendable, Hashable, CustomStringConvertible {
    /// At most this many attribute keys in one object (the top level, or one `$or` alternative), not counting
    /// `$or` itself. SNS: "A filter policy can have a maximum of five keys."
    public static let maximumKeysPerLevel = 5

    /// At most this many value combinations. A level's combinations are the product of its keys' condition
    /// counts, multiplied by the sum of its `$or` alternatives' combinations (the policy expanded into a
    /// disjunction of `$or`-free policies, as SNS computes it). So `{"a":[1,2,3],"$or":[{"b":[1,2]},{"c":[1]}]}`
    /// has 3 × (2 + 1) = 9 combinations.
    public static let maximumCombinations = 150

    /// At most this many UTF-8 bytes of policy JSON (SNS: 256 KB).
    public static let maximumSize = 256 * 1024

    /// At most this many nested JSON arrays and objects; guards the recursive parser against hostile input.
    /// A plain policy nests 4 deep (`{ "k": [ {"numeric": [ … ] } ] }`), and every `$or` level adds 2.
    public static let maximumNestingDepth = 32

    /// A `$or` array needs at least this many alternatives.
    public static let minimumOrAlternatives = 2

    /// The policy text as given, for storage.
    public let json: String

    /// The compiled form used by ``matches(_:)``.
    let root: Node

    /// Parses and validates `json`, and compiles it for matching.
    ///
    /// - Throws: ``FilterPolicyError`` naming the fault and, where there is one, the key it is at.
    public init(json: String) throws(FilterPolicyError) {
        self.root = try Self.compile(json)
        self.json = json
    }

    /// The value combinations of this policy, as limited by ``maximumCombinations``.
    public var combinations: Int { root.combinations }

    /// The policy text, as given.
    public var description: String { json }

    /// Policies are equal when their texts are equal.
    public static func == (lhs: FilterPolicy, rhs: FilterPolicy) -> Bool {
        lhs.json == rhs.json
    }

    /// Hashes the policy text.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(json)
    }
}

// MARK: - Compiled representation

extension FilterPolicy {
    /// One object level: all `keys` must match, and then one of `alternatives` (if any).
    struct Node: Sendable {
        var keys: [KeyFilter]
        var alternatives: [Node]
        /// See ``FilterPolicy/maximumCombinations``; saturates at `Int.max`.
        var combinations: Int
    }

    /// The conditions of one attribute key, split by kind so the common cases are set look-ups.
    struct KeyFilter: Sendable {
        var name: String
        /// How many conditions the key's array holds, for the combination count.
        var conditionCount = 0
        var exactStrings: Set<String> = []
        var exactNumbers: Set<Double> = []
        var conditions: [Condition] = []
        /// Some condition is `{"exists": false}`.
        var matchesAbsent = false
        /// Some condition is `{"exists": true}`.
        var matchesAnyPresent = false
    }

    enum Condition: Sendable {
        case prefix(String)
        case suffix(String)
        /// The operand, lowercased.
        case equalsIgnoreCase(String)
        case numeric(NumericRange)
        case anythingBut(AnythingBut)
    }

    /// The operand of `anything-but`: the values a matching attribute must not have.
    enum AnythingBut: Sendable {
        case strings(Set<String>)
        case numbers(Set<Double>)
        case prefix(String)
        case suffix(String)
    }

    /// A numeric interval; `nil` bounds are open-ended. `["=", x]` is `[x, x]`, both inclusive.
    struct NumericRange: Sendable, Equatable {
        struct Bound: Sendable, Equatable {
            var value: Double
            var inclusive: Bool
        }

        var lower: Bound?
        var upper: Bound?
    }
}

// MARK: - Errors

/// Why a filter policy was rejected.
///
/// ``code`` is for programs, ``message`` for people: it names the fault and, when there is one, the key it
/// is at, e.g. `key 'size': numeric operator '>' must be followed by a number`.
public struct FilterPolicyError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of fault.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case invalidJSON
            case notAnObject
            case emptyPolicy
            case invalidKey
            case duplicateKey
            case invalidCondition
            case unsupportedOperator
            case tooManyKeys
            case tooComplex
            case tooLarge
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// The text is not valid JSON.
        public static let invalidJSON = Code(.invalidJSON)
        /// The policy, or a `$or` alternative, is not a JSON object.
        public static let notAnObject = Code(.notAnObject)
        /// The policy, or a `$or` alternative, is an empty object.
        public static let emptyPolicy = Code(.emptyPolicy)
        /// An attribute key is empty.
        public static let invalidKey = Code(.invalidKey)
        /// A policy object (or a `$or` alternative) repeats a key.
        public static let duplicateKey = Code(.duplicateKey)
        /// A key's value, a condition or an operand is malformed (not an array, empty, wrong type, bad range…).
        public static let invalidCondition = Code(.invalidCondition)
        /// An operator (or `$`-keyword) that is not supported, such as `cidr`, `wildcard` or `$and`.
        public static let unsupportedOperator = Code(.unsupportedOperator)
        /// More than ``FilterPolicy/maximumKeysPerLevel`` keys in one object.
        public static let tooManyKeys = Code(.tooManyKeys)
        /// More than ``FilterPolicy/maximumCombinations`` combinations, or nested deeper than
        /// ``FilterPolicy/maximumNestingDepth``.
        public static let tooComplex = Code(.tooComplex)
        /// Longer than ``FilterPolicy/maximumSize`` bytes.
        public static let tooLarge = Code(.tooLarge)

        /// The code's name, e.g. `invalidCondition`.
        public var description: String { base.rawValue }
    }

    /// The kind of fault.
    public var code: Code
    /// The attribute key the fault is at, as a path through `$or` alternatives (`"size"`,
    /// `"$or[1].eventType"`), or `nil` for faults of the whole text.
    public var key: String?
    /// A sentence naming the fault (and the key, when there is one).
    public var message: String

    /// - Parameter reason: the fault; prefixed with `key '<key>': ` when `key` is not `nil`.
    init(_ code: Code, key: String?, _ reason: String) {
        self.code = code
        self.key = key
        self.message = key.map { "key '\($0)': \(reason)" } ?? reason
    }

    /// `FilterPolicyError.<code>: <message>`.
    public var description: String {
        "FilterPolicyError.\(code): \(message)"
    }
}
