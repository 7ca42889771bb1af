import ExchangerTestSupport
import Foundation
import Testing

@testable import Broker

// MARK: - Fixtures

/// One policy, one set of attributes, and whether the policy must accept them.
struct FilterPolicyMatchCase: Sendable, CustomTestStringConvertible {
    var policy: String
    var attributes: MessageAttributes
    var expected: Bool

    var testDescription: String {
        let shown = attributes.keys.sorted().map { "\($0)=\(attributes[$0].map(describe) ?? "?")" }
        return "\(expected ? "accepts" : "rejects") [\(shown.joined(separator: ", "))] for \(policy)"
    }
}

private func describe(_ value: MessageAttributeValue) -> String {
    switch value {
    case .string(let string): return "\"\(string)\""
    case .number(let number): return "\(number)"
    case .stringArray(let strings): return "\(strings)"
    }
}

/// Shorthand: `when(policy, attributes, accepts)`.
private func when(_ policy: String, _ attributes: MessageAttributes, _ expected: Bool) -> FilterPolicyMatchCase {
    FilterPolicyMatchCase(policy: policy, attributes: attributes, expected: expected)
}

/// Asserts the case, failing (not skipping) when the policy does not parse.
private func check(_ matchCase: FilterPolicyMatchCase, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let policy = try FilterPolicy(json: matchCase.policy)
    #expect(
        policy.matches(matchCase.attributes) == matchCase.expected,
        "\(matchCase.testDescription)",
        sourceLocation: sourceLocation
    )
}

/// The tables the tests run over, kept out of the module namespace.
enum FilterPolicyFixtures {
    /// The message attributes of the example message in the SNS documentation ("Amazon SNS example filter policies").
    static let snsDocumentationMessage: MessageAttributes = [
        "customer_interests": .stringArray(["soccer", "rugby", "hockey"]),
        "store": .string("example_corp"),
        "event": .string("order_placed"),
        "price_usd": .number(210.75),
    ]

    static let snsDocumentationPolicy = #"""
        {
          "store": ["example_corp"],
          "event": [{"anything-but": "order_cancelled"}],
          "customer_interests": ["rugby", "football", "baseball"],
          "price_usd": [{"numeric": [">=", 100]}]
        }
        """#

    // MARK: - Matching matrix, one operator at a time

    static let exactStringCases: [FilterPolicyMatchCase] = {
        let policy = #"{"color": ["red", "blue"]}"#
        return [
            when(policy, ["color": .string("red")], true),
            when(policy, ["color": .string("blue")], true),
            when(policy, ["color": .string("Red")], false),  // case-sensitive
            when(policy, ["color": .string("RED")], false),
            when(policy, ["color": .string("red ")], false),
            when(policy, ["color": .string("green")], false),
            when(policy, ["color": .string("")], false),
            when(policy, [:], false),
            when(policy, ["colour": .string("red")], false),
            when(policy, ["color": .number(5)], false),
            when(policy, ["color": .stringArray(["green", "red"])], true),
            when(policy, ["color": .stringArray(["blue"])], true),
            when(policy, ["color": .stringArray(["green", "Red"])], false),
            when(policy, ["color": .stringArray([])], false),
            // A string condition never matches a Number, even with the same text.
            when(#"{"n": ["5"]}"#, ["n": .number(5)], false),
            when(#"{"n": ["5"]}"#, ["n": .string("5")], true),
            when(#"{"s": [""]}"#, ["s": .string("")], true),
            when(#"{"s": [""]}"#, ["s": .string(" ")], false),
            when(#"{"s": ["café"]}"#, ["s": .string("café")], true),
            when(#"{"s": ["café"]}"#, ["s": .string("cafe")], false),
        ]
    }()

    static let exactNumberCases: [FilterPolicyMatchCase] = {
        let policy = #"{"n": [5, 7.5]}"#
        return [
            when(policy, ["n": .number(5)], true),
            when(policy, ["n": .number(5.0)], true),
            when(policy, ["n": .number(7.5)], true),
            when(policy, ["n": .number(5.000001)], false),
            when(policy, ["n": .number(-5)], false),
            when(policy, ["n": .number(6)], false),
            when(policy, ["n": .string("5")], false),  // a number condition never matches a String
            when(policy, ["n": .stringArray(["5", "7.5"])], false),
            when(policy, [:], false),
            when(#"{"n": [5.0]}"#, ["n": .number(5)], true),
            when(#"{"n": [0]}"#, ["n": .number(-0.0)], true),
            when(#"{"n": [-0.0]}"#, ["n": .number(0)], true),
            when(#"{"n": [301.5]}"#, ["n": .number(3.015e2)], true),
            when(#"{"n": [3.015E2]}"#, ["n": .number(301.5)], true),
            when(#"{"n": [-1.5e3]}"#, ["n": .number(-1500)], true),
            when(#"{"n": [1e-7]}"#, ["n": .number(0.0000001)], true),
            when(#"{"n": [0.1]}"#, ["n": .number(0.1)], true),
            when(#"{"n": [123456789.123456]}"#, ["n": .number(123456789.123456)], true),
            when(#"{"n": [123456789.123456]}"#, ["n": .number(123456789.123457)], false),
            when(#"{"n": [1700000000123]}"#, ["n": .number(1_700_000_000_123)], true),
        ]
    }()

    static let prefixCases: [FilterPolicyMatchCase] = {
        let policy = #"{"s": [{"prefix": "ord"}]}"#
        return [
            when(policy, ["s": .string("order")], true),
            when(policy, ["s": .string("ord")], true),
            when(policy, ["s": .string("or")], false),
            when(policy, ["s": .string("Order")], false),
            when(policy, ["s": .string("xorder")], false),
            when(policy, ["s": .string("")], false),
            when(policy, ["s": .number(1)], false),
            when(policy, ["s": .stringArray(["x", "ordinal"])], true),
            when(policy, ["s": .stringArray(["x", "word"])], false),
            when(policy, ["s": .stringArray([])], false),
            when(policy, [:], false),
            // Byte-wise on UTF-8, as SNS: "e" is a prefix of a decomposed "é" (e + U+0301) …
            when(#"{"s": [{"prefix": "e"}]}"#, ["s": .string("e\u{301}t\u{301}")], true),
            // … but not of a precomposed one.
            when(#"{"s": [{"prefix": "e"}]}"#, ["s": .string("\u{E9}t\u{E9}")], false),
            when(#"{"s": [{"prefix": "日本"}]}"#, ["s": .string("日本語")], true),
        ]
    }()

    static let suffixCases: [FilterPolicyMatchCase] = {
        let policy = #"{"s": [{"suffix": ".png"}]}"#
        return [
            when(policy, ["s": .string("a.png")], true),
            when(policy, ["s": .string(".png")], true),
            when(policy, ["s": .string("a.PNG")], false),
            when(policy, ["s": .string("png")], false),
            when(policy, ["s": .string("a.png.gz")], false),
            when(policy, ["s": .number(1)], false),
            when(policy, ["s": .stringArray(["a.jpg", "b.png"])], true),
            when(policy, ["s": .stringArray(["a.jpg"])], false),
            when(policy, [:], false),
            when(#"{"s": [{"suffix": "語"}]}"#, ["s": .string("日本語")], true),
        ]
    }()

    static let equalsIgnoreCaseCases: [FilterPolicyMatchCase] = {
        let policy = #"{"s": [{"equals-ignore-case": "ReD"}]}"#
        return [
            when(policy, ["s": .string("red")], true),
            when(policy, ["s": .string("RED")], true),
            when(policy, ["s": .string("Red")], true),
            when(policy, ["s": .string("reds")], false),
            when(policy, ["s": .string("re")], false),
            when(policy, ["s": .string("")], false),
            when(policy, ["s": .string("rēd")], false),
            when(policy, ["s": .number(1)], false),
            when(policy, ["s": .stringArray(["BLUE", "rEd"])], true),
            when(policy, ["s": .stringArray(["BLUE"])], false),
            when(policy, [:], false),
            when(#"{"s": [{"equals-ignore-case": "ÉTÉ"}]}"#, ["s": .string("été")], true),
            when(#"{"s": [{"equals-ignore-case": "ÉTÉ"}]}"#, ["s": .string("Été")], true),
            when(#"{"s": [{"equals-ignore-case": "ÉTÉ"}]}"#, ["s": .string("ete")], false),
            when(#"{"s": [{"equals-ignore-case": "abc"}]}"#, ["s": .string("ABCé")], false),
            when(#"{"s": [{"equals-ignore-case": "k"}]}"#, ["s": .string("\u{212A}")], true),  // KELVIN SIGN
        ]
    }()

    static let anythingButCases: [FilterPolicyMatchCase] = {
        let single = #"{"e": [{"anything-but": "order_cancelled"}]}"#
        let list = #"{"e": [{"anything-but": ["rugby", "tennis"]}]}"#
        let numbers = #"{"p": [{"anything-but": [100, 500]}]}"#
        let prefix = #"{"e": [{"anything-but": {"prefix": "test"}}]}"#
        let suffix = #"{"f": [{"anything-but": {"suffix": ".tmp"}}]}"#
        return [
            when(single, ["e": .string("order_placed")], true),
            when(single, ["e": .string("order_cancelled")], false),
            when(single, ["e": .string("Order_Cancelled")], true),  // case-sensitive
            when(single, [:], false),  // requires presence
            when(single, ["other": .string("x")], false),
            when(single, ["e": .number(5)], true),  // a Number is none of the strings
            when(single, ["e": .stringArray(["order_cancelled"])], false),
            when(single, ["e": .stringArray(["order_cancelled", "order_placed"])], true),  // SNS: one element suffices
            when(single, ["e": .stringArray([])], false),  // no element to satisfy it
            when(list, ["e": .string("baseball")], true),
            when(list, ["e": .string("rugby")], false),
            when(list, ["e": .string("tennis")], false),
            when(list, ["e": .stringArray(["rugby", "baseball"])], true),  // the SNS documentation's example
            when(list, ["e": .stringArray(["rugby", "tennis"])], false),
            when(numbers, ["p": .number(101)], true),
            when(numbers, ["p": .number(100.1)], true),
            when(numbers, ["p": .number(100)], false),
            when(numbers, ["p": .number(500.0)], false),
            when(numbers, [:], false),
            when(numbers, ["p": .string("100")], true),  // a String is none of the numbers
            when(numbers, ["p": .stringArray(["100"])], true),
            when(#"{"p": [{"anything-but": 0}]}"#, ["p": .number(-0.0)], false),
            when(#"{"p": [{"anything-but": 0}]}"#, ["p": .number(1)], true),
            when(prefix, ["e": .string("prod")], true),
            when(prefix, ["e": .string("testing")], false),
            when(prefix, ["e": .string("test")], false),
            when(prefix, ["e": .string("Test")], true),
            when(prefix, ["e": .number(1)], true),
            when(prefix, ["e": .stringArray(["testing", "prod"])], true),
            when(prefix, ["e": .stringArray(["testing", "tested"])], false),
            when(prefix, [:], false),
            when(suffix, ["f": .string("a.txt")], true),
            when(suffix, ["f": .string("a.tmp")], false),
            when(suffix, ["f": .string(".tmp")], false),
            when(suffix, [:], false),
            // anything-but can be combined with exists: false to also accept absence.
            when(#"{"e": [{"anything-but": "x"}, {"exists": false}]}"#, [:], true),
            when(#"{"e": [{"anything-but": "x"}, {"exists": false}]}"#, ["e": .string("x")], false),
            when(#"{"e": [{"anything-but": "x"}, {"exists": false}]}"#, ["e": .string("y")], true),
        ]
    }()

    static let numericCases: [FilterPolicyMatchCase] = {
        let equal = #"{"p": [{"numeric": ["=", 301.5]}]}"#
        let greater = #"{"p": [{"numeric": [">", 0]}]}"#
        let greaterOrEqual = #"{"p": [{"numeric": [">=", 0]}]}"#
        let less = #"{"p": [{"numeric": ["<", 0]}]}"#
        let lessOrEqual = #"{"p": [{"numeric": ["<=", 0]}]}"#
        let halfOpen = #"{"p": [{"numeric": [">", 0, "<=", 150]}]}"#
        let closedOpen = #"{"p": [{"numeric": [">=", 10, "<", 20]}]}"#
        return [
            when(equal, ["p": .number(301.5)], true),
            when(equal, ["p": .number(3.015e2)], true),
            when(equal, ["p": .number(301.50001)], false),
            when(equal, ["p": .string("301.5")], false),  // only Number attributes
            when(equal, ["p": .stringArray(["301.5"])], false),
            when(equal, [:], false),
            when(greater, ["p": .number(0)], false),
            when(greater, ["p": .number(0.000001)], true),
            when(greater, ["p": .number(-1)], false),
            when(greaterOrEqual, ["p": .number(0)], true),
            when(greaterOrEqual, ["p": .number(-0.0)], true),
            when(greaterOrEqual, ["p": .number(-0.000001)], false),
            when(less, ["p": .number(-1)], true),
            when(less, ["p": .number(0)], false),
            when(lessOrEqual, ["p": .number(0)], true),
            when(lessOrEqual, ["p": .number(0.1)], false),
            when(halfOpen, ["p": .number(0)], false),
            when(halfOpen, ["p": .number(0.01)], true),
            when(halfOpen, ["p": .number(150)], true),
            when(halfOpen, ["p": .number(150.01)], false),
            when(halfOpen, ["p": .string("50")], false),
            when(closedOpen, ["p": .number(10)], true),
            when(closedOpen, ["p": .number(19.999)], true),
            when(closedOpen, ["p": .number(20)], false),
            when(closedOpen, ["p": .number(9.999)], false),
            when(#"{"p": [{"numeric": [">=", 5, "<=", 5]}]}"#, ["p": .number(5)], true),
            when(#"{"p": [{"numeric": [">=", 5, "<=", 5]}]}"#, ["p": .number(5.1)], false),
            when(#"{"p": [{"numeric": [">", 5, "<", 5]}]}"#, ["p": .number(5)], false),  // empty but valid
            when(#"{"p": [{"numeric": [">", -1e3, "<", 1E3]}]}"#, ["p": .number(-999)], true),
            when(#"{"p": [{"numeric": [">", -1e3, "<", 1E3]}]}"#, ["p": .number(-1000)], false),
            // Two numeric conditions in one array are ORed: outside [0, 10].
            when(#"{"p": [{"numeric": ["<", 0]}, {"numeric": [">", 10]}]}"#, ["p": .number(5)], false),
            when(#"{"p": [{"numeric": ["<", 0]}, {"numeric": [">", 10]}]}"#, ["p": .number(11)], true),
            when(#"{"p": [{"numeric": ["<", 0]}, {"numeric": [">", 10]}]}"#, ["p": .number(-1)], true),
        ]
    }()

    static let existsCases: [FilterPolicyMatchCase] = {
        let present = #"{"k": [{"exists": true}]}"#
        let absent = #"{"k": [{"exists": false}]}"#
        let either = #"{"k": [{"exists": true}, {"exists": false}]}"#
        return [
            when(present, ["k": .string("x")], true),
            when(present, ["k": .string("")], true),
            when(present, ["k": .number(0)], true),
            when(present, ["k": .stringArray(["x"])], true),
            when(present, ["k": .stringArray([])], true),
            when(present, [:], false),
            when(present, ["K": .string("x")], false),  // attribute names are case-sensitive
            when(absent, [:], true),
            when(absent, ["other": .string("x")], true),
            when(absent, ["k": .string("x")], false),
            when(absent, ["k": .number(0)], false),
            when(absent, ["k": .stringArray([])], false),
            when(either, [:], true),
            when(either, ["k": .number(1)], true),
            // exists: false next to another key: ANDed.
            when(#"{"k": [{"exists": false}], "a": ["x"]}"#, ["a": .string("x")], true),
            when(#"{"k": [{"exists": false}], "a": ["x"]}"#, ["a": .string("x"), "k": .string("x")], false),
            when(#"{"k": [{"exists": false}], "a": ["x"]}"#, [:], false),
            // A value condition next to exists: false accepts absence or that value.
            when(#"{"k": ["v", {"exists": false}]}"#, ["k": .string("v")], true),
            when(#"{"k": ["v", {"exists": false}]}"#, ["k": .string("w")], false),
        ]
    }()

    static let andOrCases: [FilterPolicyMatchCase] = {
        let and = #"{"a": ["x"], "b": [1]}"#
        let or = #"{"a": ["x", {"prefix": "y"}, 3, {"numeric": [">", 100]}]}"#
        return [
            when(and, ["a": .string("x"), "b": .number(1)], true),
            when(and, ["a": .string("x"), "b": .number(1), "unrelated": .string("z")], true),
            when(and, ["a": .string("x")], false),
            when(and, ["b": .number(1)], false),
            when(and, ["a": .string("x"), "b": .number(2)], false),
            when(and, ["a": .string("X"), "b": .number(1)], false),
            when(and, [:], false),
            when(or, ["a": .string("x")], true),
            when(or, ["a": .string("yes")], true),
            when(or, ["a": .number(3)], true),
            when(or, ["a": .number(101)], true),
            when(or, ["a": .number(50)], false),
            when(or, ["a": .string("z")], false),
            when(or, ["a": .string("3")], false),
        ]
    }()

    static let orOperatorCases: [FilterPolicyMatchCase] = {
        // The SNS documentation's "standard OR": "source" && ("metricName" || "namespace").
        let standard = #"""
            {"source": ["aws.cloudwatch"],
             "$or": [{"metricName": ["CPUUtilization"]}, {"namespace": ["AWS/EC2"]}]}
            """#
        let only = #"{"$or": [{"a": ["1"]}, {"b": ["2"]}]}"#
        let nested = #"{"$or": [{"a": ["1"], "$or": [{"b": ["2"]}, {"c": ["3"]}]}, {"d": ["4"]}]}"#
        let withAbsence = #"{"$or": [{"a": [{"exists": false}]}, {"a": ["yes"]}]}"#
        return [
            when(standard, ["source": .string("aws.cloudwatch"), "metricName": .string("CPUUtilization")], true),
            when(standard, ["source": .string("aws.cloudwatch"), "namespace": .string("AWS/EC2")], true),
            when(
                standard,
                ["source": .string("aws.cloudwatch"), "metricName": .string("x"), "namespace": .string("AWS/EC2")],
                true
            ),
            when(standard, ["source": .string("aws.cloudwatch")], false),
            when(standard, ["metricName": .string("CPUUtilization"), "namespace": .string("AWS/EC2")], false),
            when(standard, ["source": .string("aws.events"), "metricName": .string("CPUUtilization")], false),
            when(only, ["a": .string("1")], true),
            when(only, ["b": .string("2")], true),
            when(only, ["a": .string("2"), "b": .string("1")], false),
            when(only, [:], false),
            when(nested, ["a": .string("1"), "c": .string("3")], true),
            when(nested, ["a": .string("1"), "b": .string("2")], true),
            when(nested, ["a": .string("1")], false),
            when(nested, ["b": .string("2")], false),
            when(nested, ["d": .string("4")], true),
            when(withAbsence, [:], true),
            when(withAbsence, ["a": .string("yes")], true),
            when(withAbsence, ["a": .string("no")], false),
            // "$or" as an attribute name is not looked up.
            when(only, ["$or": .string("1")], false),
        ]
    }()

    /// Policies from the SNS documentation pages, against the documentation's example message.
    static let snsDocumentationCases: [FilterPolicyMatchCase] = [
        when(snsDocumentationPolicy, snsDocumentationMessage, true),
        when(#"{"store": [{"exists": true}]}"#, snsDocumentationMessage, true),
        when(#"{"store": [{"exists": false}]}"#, snsDocumentationMessage, false),
        when(#"{"customer_interests": ["rugby", "tennis"]}"#, snsDocumentationMessage, true),
        when(#"{"customer_interests": ["baseball"]}"#, snsDocumentationMessage, false),
        when(#"{"customer_interests": [{"prefix": "hoc"}]}"#, snsDocumentationMessage, true),
        when(#"{"customer_interests": [{"anything-but": ["rugby", "tennis"]}]}"#, snsDocumentationMessage, true),
        when(#"{"customer_interests": [{"anything-but": {"prefix": "bas"}}]}"#, snsDocumentationMessage, true),
        when(#"{"store": [{"equals-ignore-case": "EXAMPLE_CORP"}]}"#, snsDocumentationMessage, true),
        when(#"{"store": [{"suffix": "_corp"}]}"#, snsDocumentationMessage, true),
        when(#"{"event": [{"anything-but": ["order_cancelled", "order_placed"]}]}"#, snsDocumentationMessage, false),
        when(#"{"price_usd": [{"numeric": [">", 0, "<=", 150]}]}"#, snsDocumentationMessage, false),
        when(#"{"price_usd": [{"numeric": ["=", 210.75]}]}"#, snsDocumentationMessage, true),
        when(#"{"price_usd": [{"anything-but": [100, 500]}]}"#, snsDocumentationMessage, true),
        when(#"{"customer_interests": ["rugby"], "price_usd": [{"numeric": [">", 100]}]}"#, snsDocumentationMessage, true),
    ]
}

@Suite("FilterPolicy matching")
struct FilterPolicyMatchingTests {
    @Test("exact string conditions", arguments: FilterPolicyFixtures.exactStringCases)
    func exactString(_ matchCase: FilterPolicyMatchCase) throws { try check(matchCase) }

    @Test("exact number conditions", arguments: FilterPolicyFixtures.exactNumberCases)
    func exactNumber(_ matchCase: FilterPolicyMatchCase) throws { try check(matchCase) }

    @Test("prefix", arguments: FilterPolicyFixtures.prefixCases)
    func prefix(_ matchCase: FilterPolicyMatchCase) throws { try check(matchCase) }

    @Test("suffix", arguments: FilterPolicyFixtures.suffixCases)
    func suffix(_ matchCase: FilterPolicyMatchCase) throws { try check(matchCase) }

    @Test("equals-ignore-case", arguments: FilterPolicyFixtures.equalsIgnoreCaseCases)
    func equalsIgnoreCase(_ matchCase: FilterPolicyMatchCase) throws { try check(matchCase) }

    @Test("anything-but", arguments: FilterPolicyFixtures.anythingButCases)
    func anythingBut(_ matchCase: FilterPolicyMatchCase) throws { try check(matchCase) }

    @Test("numeric comparisons and ranges", arguments: FilterPolicyFixtures.numericCases)
    func numeric(_ matchCase: FilterPolicyMatchCase) throws { try check(matchCase) }

    @Test("exists", arguments: FilterPolicyFixtures.existsCases)
    func exists(_ matchCase: FilterPolicyMatchCase) throws { try check(matchCase) }

    @Test("AND across keys, OR within a key", arguments: FilterPolicyFixtures.andOrCases)
    func andOr(_ matchCase: FilterPolicyMatchCase) throws { try check(matchCase) }

    @Test("$or", arguments: FilterPolicyFixtures.orOperatorCases)
    func orOperator(_ matchCase: FilterPolicyMatchCase) throws { try check(matchCase) }

    @Test("SNS documentation examples", arguments: FilterPolicyFixtures.snsDocumentationCases)
    func snsDocumentation(_ matchCase: FilterPolicyMatchCase) throws { try check(matchCase) }

    @Test("the SNS documentation policy rejects each single deviation from its example message")
    func documentationPolicyDeviations() throws {
        let policy = try FilterPolicy(json: FilterPolicyFixtures.snsDocumentationPolicy)
        #expect(policy.matches(FilterPolicyFixtures.snsDocumentationMessage))
        var message = FilterPolicyFixtures.snsDocumentationMessage
        message["price_usd"] = .number(100)
        #expect(policy.matches(message), ">= 100 includes 100")

        let deviations: [(String, MessageAttributeValue?)] = [
            ("store", .string("other_corp")),
            ("store", nil),
            ("event", .string("order_cancelled")),
            ("event", nil),
            ("customer_interests", .stringArray(["soccer", "hockey"])),
            ("customer_interests", .string("Rugby")),
            ("price_usd", .number(99.99)),
            ("price_usd", .string("210.75")),
        ]
        for (key, value) in deviations {
            var message = FilterPolicyFixtures.snsDocumentationMessage
            message[key] = value
            #expect(!policy.matches(message), "\(key) = \(value.map(describe) ?? "absent")")
        }
    }

    @Test("matching is repeatable and the compiled policy is usable from other tasks")
    func concurrentMatching() async throws {
        let policy = try FilterPolicy(json: FilterPolicyFixtures.snsDocumentationPolicy)
        let results = await withTaskGroup(of: Bool.self, returning: [Bool].self) { group in
            for index in 0..<8 {
                group.addTask {
                    var message = FilterPolicyFixtures.snsDocumentationMessage
                    message["price_usd"] = .number(Double(index * 30))
                    return policy.matches(message)
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        // Prices 0, 30, …, 210: only 120, 150, 180 and 210 are >= 100.
        #expect(results.count(where: { $0 }) == 4)
        #expect(results.count(where: { !$0 }) == 4)
    }
}

// MARK: - Validation

/// A policy that must be rejected, with the expected code, key, and a fragment of the message.
struct FilterPolicyInvalidCase: Sendable, CustomTestStringConvertible {
    var policy: String
    var code: FilterPolicyError.Code
    var key: String?
    var fragment: String

    var testDescription: String {
        let shown = policy.count > 80 ? String(policy.prefix(77)) + "..." : policy
        return "\(code) at \(key ?? "(top)"): \(shown)"
    }
}

private func reject(
    _ policy: String, _ code: FilterPolicyError.Code, key: String?, _ fragment: String
) -> FilterPolicyInvalidCase {
    FilterPolicyInvalidCase(policy: policy, code: code, key: key, fragment: fragment)
}

private func manyValues(_ count: Int) -> String {
    "[" + (0..<count).map(String.init).joined(separator: ",") + "]"
}

extension FilterPolicyFixtures {
    static let invalidCases: [FilterPolicyInvalidCase] = [
        // Not JSON
        reject("", .invalidJSON, key: nil, "unexpected end of input"),
        reject("{", .invalidJSON, key: nil, "expected a string key"),
        reject(#"{"a": ["x"],}"#, .invalidJSON, key: nil, "expected a string key"),
        reject(#"{"a": ["x",]}"#, .invalidJSON, key: nil, "expected a value"),
        reject(#"{"a": ["x"]} x"#, .invalidJSON, key: nil, "after the JSON value"),
        reject(#"{"a": ["x"]}{}"#, .invalidJSON, key: nil, "after the JSON value"),
        reject(#"{'a': ["x"]}"#, .invalidJSON, key: nil, "expected a string key"),
        reject(#"{"a" ["x"]}"#, .invalidJSON, key: nil, "expected ':'"),
        reject(#"{"a": ["x"}"#, .invalidJSON, key: nil, "expected ',' or ']'"),
        reject(#"{"a": [01]}"#, .invalidJSON, key: nil, "leading zeros"),
        reject(#"{"a": [1.]}"#, .invalidJSON, key: nil, "digit after '.'"),
        reject(#"{"a": [.5]}"#, .invalidJSON, key: nil, "expected a value"),
        reject(#"{"a": [+5]}"#, .invalidJSON, key: nil, "expected a value"),
        reject(#"{"a": [1e]}"#, .invalidJSON, key: nil, "exponent"),
        reject(#"{"a": [NaN]}"#, .invalidJSON, key: nil, "expected a value"),
        reject(#"{"a": [tru]}"#, .invalidJSON, key: nil, "expected 'true'"),
        reject(#"{"a": ["x]}"#, .invalidJSON, key: nil, "unterminated string"),
        reject(#"{"a": ["\x"]}"#, .invalidJSON, key: nil, "invalid escape"),
        reject(#"{"a": ["\u12G4"]}"#, .invalidJSON, key: nil, "invalid hex digit"),
        reject(#"{"a": ["\ud800"]}"#, .invalidJSON, key: nil, "not followed by a low surrogate"),
        reject(#"{"a": ["\udc00"]}"#, .invalidJSON, key: nil, "lone low surrogate"),
        reject("{\"a\": [\"tab\u{09}here\"]}", .invalidJSON, key: nil, "control character U+0009"),
        reject("{\n  \"a\": [\"x\"],\n  \"b\": [x]\n}", .invalidJSON, key: nil, "line 3, column 9"),
        // Not a policy object
        reject(#"["a"]"#, .notAnObject, key: nil, "must be a JSON object, found an array"),
        reject(#""a""#, .notAnObject, key: nil, "found a string"),
        reject("null", .notAnObject, key: nil, "found null"),
        reject("42", .notAnObject, key: nil, "found the number 42"),
        reject("{}", .emptyPolicy, key: nil, "at least one attribute"),
        reject(" { } ", .emptyPolicy, key: nil, "at least one attribute"),
        // Keys
        reject(#"{"": ["x"]}"#, .invalidKey, key: "", "must not be empty"),
        reject(#"{"$and": [{"a": ["x"]}, {"b": ["y"]}]}"#, .unsupportedOperator, key: "$and", "'$and' is not supported"),
        reject(#"{"a": ["x"], "a": ["y"]}"#, .duplicateKey, key: "a", "appears more than once"),
        reject(#"{"$or": [{"a": ["x"]}, {"b": ["y"]}], "$or": [{"c": ["x"]}, {"d": ["y"]}]}"#, .duplicateKey, key: "$or", "more than once"),
        reject(#"{"$or": [{"a": ["x"], "a": ["y"]}, {"b": ["z"]}]}"#, .duplicateKey, key: "$or[0].a", "more than once"),
        reject(#"{"a": [{"prefix": "x", "prefix": "y"}]}"#, .invalidCondition, key: "a", "found 2 ('prefix', 'prefix')"),
        // Values that are not arrays of conditions
        reject(#"{"a": "x"}"#, .invalidCondition, key: "a", "non-empty array of conditions, found a string"),
        reject(#"{"a": 5}"#, .invalidCondition, key: "a", "found the number 5"),
        reject(#"{"a": true}"#, .invalidCondition, key: "a", "found true"),
        reject(#"{"a": null}"#, .invalidCondition, key: "a", "found null"),
        reject(#"{"a": {"b": ["x"]}}"#, .invalidCondition, key: "a", "nested properties"),
        reject(#"{"a": []}"#, .invalidCondition, key: "a", "must not be empty"),
        // Conditions of the wrong kind
        reject(#"{"a": [true]}"#, .invalidCondition, key: "a", "true is not a valid condition"),
        reject(#"{"a": [false]}"#, .invalidCondition, key: "a", "false is not a valid condition"),
        reject(#"{"a": ["x", null]}"#, .invalidCondition, key: "a", "null is not a valid condition"),
        reject(#"{"a": [["x"]]}"#, .invalidCondition, key: "a", "nested array"),
        reject(#"{"a": [1e999]}"#, .invalidCondition, key: "a", "number 1e999 is out of range"),
        // Operator objects
        reject(#"{"a": [{}]}"#, .invalidCondition, key: "a", "exactly one key"),
        reject(#"{"a": [{"prefix": "x", "suffix": "y"}]}"#, .invalidCondition, key: "a", "found 2 ('prefix', 'suffix')"),
        reject(#"{"ip": [{"cidr": "10.0.0.0/24"}]}"#, .unsupportedOperator, key: "ip", "operator 'cidr' is not supported"),
        reject(#"{"f": [{"wildcard": "*.png"}]}"#, .unsupportedOperator, key: "f", "operator 'wildcard' is not supported"),
        reject(#"{"a": [{"Prefix": "x"}]}"#, .unsupportedOperator, key: "a", "operator 'Prefix'"),
        reject(#"{"a": [{"prefix": ""}]}"#, .invalidCondition, key: "a", "'prefix' must be followed by a non-empty string, found an empty string"),
        reject(#"{"a": [{"prefix": 5}]}"#, .invalidCondition, key: "a", "'prefix' must be followed by a non-empty string, found the number 5"),
        reject(#"{"a": [{"suffix": ["x"]}]}"#, .invalidCondition, key: "a", "'suffix' must be followed by a non-empty string, found an array"),
        reject(#"{"a": [{"suffix": ""}]}"#, .invalidCondition, key: "a", "'suffix' must be followed by a non-empty string"),
        reject(#"{"a": [{"equals-ignore-case": 1}]}"#, .invalidCondition, key: "a", "'equals-ignore-case' must be followed by a string"),
        reject(#"{"a": [{"exists": "true"}]}"#, .invalidCondition, key: "a", "'exists' must be followed by true or false, found a string"),
        reject(#"{"a": [{"exists": 1}]}"#, .invalidCondition, key: "a", "'exists' must be followed by true or false, found the number 1"),
        reject(#"{"a": [{"exists": 0}]}"#, .invalidCondition, key: "a", "found the number 0"),
        reject(#"{"a": [{"exists": null}]}"#, .invalidCondition, key: "a", "found null"),
        // anything-but operands
        reject(#"{"a": [{"anything-but": []}]}"#, .invalidCondition, key: "a", "must not have an empty array"),
        reject(#"{"a": [{"anything-but": ["x", 1]}]}"#, .invalidCondition, key: "a", "only strings or only numbers, not both"),
        reject(#"{"a": [{"anything-but": [1, "x"]}]}"#, .invalidCondition, key: "a", "not both"),
        reject(#"{"a": [{"anything-but": [true]}]}"#, .invalidCondition, key: "a", "found true"),
        reject(#"{"a": [{"anything-but": ["x", null]}]}"#, .invalidCondition, key: "a", "found null"),
        reject(#"{"a": [{"anything-but": [["x"]]}]}"#, .invalidCondition, key: "a", "found an array"),
        reject(#"{"a": [{"anything-but": null}]}"#, .invalidCondition, key: "a", "found null"),
        reject(#"{"a": [{"anything-but": false}]}"#, .invalidCondition, key: "a", "found false"),
        reject(#"{"a": [{"anything-but": {"equals-ignore-case": "x"}}]}"#, .unsupportedOperator, key: "a", "does not support 'equals-ignore-case'"),
        reject(#"{"a": [{"anything-but": {"numeric": [">", 1]}}]}"#, .unsupportedOperator, key: "a", "does not support 'numeric'"),
        reject(#"{"a": [{"anything-but": {"prefix": ""}}]}"#, .invalidCondition, key: "a", "non-empty string"),
        reject(#"{"a": [{"anything-but": {"suffix": 1}}]}"#, .invalidCondition, key: "a", "non-empty string"),
        reject(#"{"a": [{"anything-but": {"prefix": "a", "suffix": "b"}}]}"#, .invalidCondition, key: "a", "exactly one key"),
        reject(#"{"a": [{"anything-but": {}}]}"#, .invalidCondition, key: "a", "exactly one key"),
        reject(#"{"a": [{"anything-but": [1e400]}]}"#, .invalidCondition, key: "a", "out of range"),
        // numeric expressions
        reject(#"{"size": [{"numeric": [">"]}]}"#, .invalidCondition, key: "size", "numeric operator '>' must be followed by a number"),
        reject(#"{"size": [{"numeric": [">", "5"]}]}"#, .invalidCondition, key: "size", "numeric operator '>' must be followed by a number"),
        reject(#"{"size": [{"numeric": [">", true]}]}"#, .invalidCondition, key: "size", "must be followed by a number"),
        reject(#"{"size": [{"numeric": [">", 0, "<"]}]}"#, .invalidCondition, key: "size", "numeric operator '<' must be followed by a number"),
        reject(#"{"size": [{"numeric": []}]}"#, .invalidCondition, key: "size", "non-empty array"),
        reject(#"{"size": [{"numeric": 5}]}"#, .invalidCondition, key: "size", "found the number 5"),
        reject(#"{"size": [{"numeric": ">"}]}"#, .invalidCondition, key: "size", "found a string"),
        reject(#"{"size": [{"numeric": ["!=", 5]}]}"#, .invalidCondition, key: "size", "numeric operator '!=' is not one of"),
        reject(#"{"size": [{"numeric": ["==", 5]}]}"#, .invalidCondition, key: "size", "'==' is not one of"),
        reject(#"{"size": [{"numeric": [5, ">"]}]}"#, .invalidCondition, key: "size", "expects an operator"),
        reject(#"{"size": [{"numeric": ["<", 10, ">", 0]}]}"#, .invalidCondition, key: "size", "lower bound ('>' or '>=') followed by an upper bound"),
        reject(#"{"size": [{"numeric": [">", 0, ">", 10]}]}"#, .invalidCondition, key: "size", "found '>' then '>'"),
        reject(#"{"size": [{"numeric": ["<", 0, "<", 10]}]}"#, .invalidCondition, key: "size", "found '<' then '<'"),
        reject(#"{"size": [{"numeric": [">", 10, "<", 5]}]}"#, .invalidCondition, key: "size", "lower bound 10 is greater than upper bound 5"),
        reject(#"{"size": [{"numeric": ["=", 5, "<", 10]}]}"#, .invalidCondition, key: "size", "'=' cannot be combined"),
        reject(#"{"size": [{"numeric": [">", 0, "=", 10]}]}"#, .invalidCondition, key: "size", "'=' cannot be combined"),
        reject(#"{"size": [{"numeric": [">", 0, "<", 10, "<", 20]}]}"#, .invalidCondition, key: "size", "at most two comparisons"),
        reject(#"{"size": [{"numeric": [">", 1e999]}]}"#, .invalidCondition, key: "size", "number 1e999 is out of range"),
        // $or
        reject(#"{"$or": [{"a": ["x"]}]}"#, .invalidCondition, key: "$or", "at least 2 alternatives, found 1"),
        reject(#"{"$or": []}"#, .invalidCondition, key: "$or", "found 0"),
        reject(#"{"$or": {"a": ["x"]}}"#, .invalidCondition, key: "$or", "must be an array"),
        reject(#"{"$or": [{"a": ["x"]}, "b"]}"#, .notAnObject, key: "$or[1]", "must be a JSON object, found a string"),
        reject(#"{"$or": [{"a": ["x"]}, ["b"]]}"#, .notAnObject, key: "$or[1]", "found an array"),
        reject(#"{"$or": [{"a": ["x"]}, {}]}"#, .emptyPolicy, key: "$or[1]", "at least one attribute"),
        reject(#"{"$or": [{"a": ["x"]}, {"eventType": [{"numeric": [">"]}]}]}"#, .invalidCondition, key: "$or[1].eventType", "numeric operator '>' must be followed by a number"),
        reject(#"{"$or": [{"a": ["x"]}, {"$or": [{"b": ["y"]}, {"c": [true]}]}]}"#, .invalidCondition, key: "$or[1].$or[1].c", "true is not a valid condition"),
        reject(#"{"$or": [{"a": [{"cidr": "x"}]}, {"b": ["y"]}]}"#, .unsupportedOperator, key: "$or[0].a", "'cidr'"),
        // Limits
        reject(#"{"a":[1],"b":[1],"c":[1],"d":[1],"e":[1],"f":[1]}"#, .tooManyKeys, key: nil, "has 6 attribute keys; at most 5"),
        reject(#"{"$or":[{"a":[1],"b":[1],"c":[1],"d":[1],"e":[1],"f":[1]},{"x":[1]}]}"#, .tooManyKeys, key: "$or[0]", "'$or' alternative has 6 attribute keys"),
        reject(#"{"a": \#(manyValues(151))}"#, .tooComplex, key: nil, "151 value combinations; at most 150"),
        reject(#"{"a": \#(manyValues(13)), "b": \#(manyValues(12))}"#, .tooComplex, key: nil, "156 value combinations"),
        reject(#"{"a": \#(manyValues(5)), "$or": [{"b": \#(manyValues(20))}, {"c": \#(manyValues(11))}]}"#, .tooComplex, key: nil, "155 value combinations"),
        reject(
            #"{"a": \#(manyValues(100)), "b": \#(manyValues(100)), "c": \#(manyValues(100)), "d": \#(manyValues(100)), "e": \#(manyValues(100))}"#,
            .tooComplex, key: nil, "10000000000 value combinations"
        ),
        reject(#"{"a": "# + String(repeating: "[", count: 40) + String(repeating: "]", count: 40) + "}", .tooComplex, key: nil, "more than 32 deep"),
        reject(#"{"a": [""# + String(repeating: "x", count: FilterPolicy.maximumSize) + #""]}"#, .tooLarge, key: nil, "at most 262144"),
    ]
}

@Suite("FilterPolicy validation")
struct FilterPolicyValidationTests {
    @Test("rejects bad policies with the expected code, key and message", arguments: FilterPolicyFixtures.invalidCases)
    func rejects(_ invalid: FilterPolicyInvalidCase) {
        let error = #expect(throws: FilterPolicyError.self) {
            try FilterPolicy(json: invalid.policy)
        }
        guard let error else { return }
        #expect(error.code == invalid.code, "\(error)")
        #expect(error.key == invalid.key, "\(error)")
        #expect(error.message.contains(invalid.fragment), "\(error.message)")
        if let key = invalid.key {
            #expect(error.message.hasPrefix("key '\(key)': "), "\(error.message)")
        } else {
            #expect(!error.message.hasPrefix("key '"), "\(error.message)")
        }
        #expect(error.description == "FilterPolicyError.\(invalid.code): \(error.message)")
    }

    @Test(
        "accepts well-formed policies",
        arguments: [
            #"{"a": ["x"]}"#,
            " \n\t{ \"a\" : [ \"x\" , 1 ] }\r\n",
            #"{"a": [{"prefix": "x"}, {"suffix": "y"}, {"equals-ignore-case": ""}, "z", 1, -2.5e-3]}"#,
            #"{"a": [{"anything-but": "x"}, {"anything-but": 1}, {"anything-but": ["x"]}, {"anything-but": [1, 2.5]}]}"#,
            #"{"a": [{"anything-but": {"prefix": "x"}}, {"anything-but": {"suffix": "y"}}]}"#,
            #"{"a": [{"numeric": ["=", 0]}, {"numeric": ["<", 0]}, {"numeric": ["<=", 0]}, {"numeric": [">", 0]}]}"#,
            #"{"a": [{"numeric": [">=", 0]}, {"numeric": [">", 0, "<", 1]}, {"numeric": [">=", -1, "<=", -1]}]}"#,
            #"{"a": [{"exists": true}], "b": [{"exists": false}]}"#,
            #"{"$or": [{"a": ["x"]}, {"b": ["y"]}]}"#,
            #"{"a": ["x"], "$or": [{"b": ["y"]}, {"c": ["z"], "$or": [{"d": [1]}, {"e": [2]}]}]}"#,
            #"{"a":[1],"b":[1],"c":[1],"d":[1],"e":[1],"$or":[{"f":[1]},{"g":[1]}]}"#,
            #"{"attr.with-dots_and-dashes": ["x"]}"#,
        ]
    )
    func accepts(_ json: String) throws {
        let policy = try FilterPolicy(json: json)
        #expect(policy.json == json)
        #expect(policy.combinations >= 1)
    }

    @Test("exactly at the limits is accepted")
    func limitsAreInclusive() throws {
        let fiveKeys = try FilterPolicy(json: #"{"a":[1],"b":[1],"c":[1],"d":[1],"e":[1]}"#)
        #expect(fiveKeys.matches(["a": .number(1), "b": .number(1), "c": .number(1), "d": .number(1), "e": .number(1)]))

        let wide = try FilterPolicy(json: #"{"a": \#(manyValues(150))}"#)
        #expect(wide.combinations == FilterPolicy.maximumCombinations)
        #expect(wide.matches(["a": .number(149)]))
        #expect(!wide.matches(["a": .number(150)]))

        let product = try FilterPolicy(json: #"{"a": \#(manyValues(10)), "b": \#(manyValues(15))}"#)
        #expect(product.combinations == 150)

        let orSum = try FilterPolicy(
            json: #"{"a": \#(manyValues(5)), "$or": [{"b": \#(manyValues(20))}, {"c": \#(manyValues(10))}]}"#
        )
        #expect(orSum.combinations == 150)

        // The nesting limit still leaves room for several nested $or levels.
        var nested = #"{"z": ["z"]}"#
        for level in 0..<10 {
            nested = #"{"$or": [\#(nested), {"l\#(level)": ["x"]}]}"#
        }
        let deep = try FilterPolicy(json: nested)
        #expect(deep.matches(["z": .string("z")]))
        #expect(deep.matches(["l9": .string("x")]))
        #expect(!deep.matches(["l9": .string("y")]))
    }

    @Test(
        "combinations: product over keys, times the sum over $or alternatives",
        arguments: [
            (#"{"a": ["x"]}"#, 1),
            (#"{"a": ["x", "y", {"prefix": "z"}]}"#, 3),
            (#"{"a": ["x", "y"], "b": [1, 2, 3]}"#, 6),
            (#"{"a": [1, 2, 3], "$or": [{"b": [1, 2]}, {"c": [1]}]}"#, 9),
            (#"{"$or": [{"b": [1, 2]}, {"c": [1], "d": [1, 2, 3]}]}"#, 5),
            (#"{"a": [1, 2], "$or": [{"b": [1]}, {"c": [1, 2], "$or": [{"d": [1, 2, 3]}, {"e": [1]}]}]}"#, 2 * (1 + 2 * (3 + 1))),
            (#"{"a": [{"anything-but": [1, 2, 3, 4]}]}"#, 1),
        ]
    )
    func combinations(_ json: String, _ expected: Int) throws {
        #expect(try FilterPolicy(json: json).combinations == expected)
    }

    @Test("the size limit counts UTF-8 bytes")
    func sizeLimitCountsBytes() throws {
        // Each "é" is 2 bytes: the text is under the limit in characters but over it in bytes.
        let filler = String(repeating: "é", count: FilterPolicy.maximumSize / 2)
        let json = #"{"a": [""# + filler + #""]}"#
        #expect(json.count < FilterPolicy.maximumSize)
        let error = #expect(throws: FilterPolicyError.self) { try FilterPolicy(json: json) }
        #expect(error?.code == .tooLarge)

        let fits = #"{"a": [""# + String(repeating: "x", count: FilterPolicy.maximumSize - 20) + #""]}"#
        #expect(fits.utf8.count <= FilterPolicy.maximumSize)
        #expect(try FilterPolicy(json: fits).combinations == 1)
    }

    @Test("JSON booleans are never taken for numbers, nor numbers for booleans")
    func booleansAreNotNumbers() throws {
        #expect(try FilterPolicy(json: #"{"a": [1]}"#).matches(["a": .number(1)]))
        #expect(try FilterPolicy(json: #"{"a": [0]}"#).matches(["a": .number(0)]))
        #expect(throws: FilterPolicyError.self) { try FilterPolicy(json: #"{"a": [true]}"#) }
        #expect(throws: FilterPolicyError.self) { try FilterPolicy(json: #"{"a": [false]}"#) }
        #expect(try FilterPolicy(json: #"{"a": [{"exists": true}]}"#).matches(["a": .number(1)]))
        #expect(try FilterPolicy(json: #"{"a": [{"exists": false}]}"#).matches([:]))
        #expect(throws: FilterPolicyError.self) { try FilterPolicy(json: #"{"a": [{"exists": 1}]}"#) }
        #expect(throws: FilterPolicyError.self) { try FilterPolicy(json: #"{"a": [{"exists": 0}]}"#) }
        #expect(throws: FilterPolicyError.self) { try FilterPolicy(json: #"{"a": [{"numeric": ["=", true]}]}"#) }
        #expect(throws: FilterPolicyError.self) { try FilterPolicy(json: #"{"a": [{"anything-but": [true, false]}]}"#) }
    }

    @Test("string escapes and Unicode in keys and values")
    func escapes() throws {
        let policy = try FilterPolicy(
            json: #"{"k\u00e9y": ["\u00e9t\u00E9", "\ud83d\ude00", "a\"b", "\\\/", "tab\there", "nul\u0000"]}"#
        )
        for value in ["été", "😀", "a\"b", "\\/", "tab\there", "nul\u{0}"] {
            #expect(policy.matches(["kéy": .string(value)]), "\(value)")
        }
        #expect(!policy.matches(["key": .string("été")]))
        #expect(!policy.matches(["kéy": .string("ete")]))

        let raw = try FilterPolicy(json: #"{"emoji": ["😀"], "日本": [{"prefix": "東"}]}"#)
        #expect(raw.matches(["emoji": .string("\u{1F600}"), "日本": .string("東京")]))
    }
}

// MARK: - Value semantics of FilterPolicy and FilterPolicyError

@Suite("FilterPolicy value semantics")
struct FilterPolicyValueTests {
    @Test("keeps the original text, and compares and hashes by it")
    func keepsOriginalText() throws {
        let text = "{ \"a\" :\n [\"x\"] }"
        let policy = try FilterPolicy(json: text)
        #expect(policy.json == text)
        #expect(policy.description == text)
        #expect(policy == (try FilterPolicy(json: text)))
        #expect(policy != (try FilterPolicy(json: #"{"a":["x"]}"#)))
        let set: Set<FilterPolicy> = [policy, try FilterPolicy(json: text), try FilterPolicy(json: #"{"b":["x"]}"#)]
        #expect(set.count == 2)
    }

    @Test("error codes describe themselves by name and compare by identity")
    func errorCodes() {
        let codes: [(FilterPolicyError.Code, String)] = [
            (.invalidJSON, "invalidJSON"), (.notAnObject, "notAnObject"), (.emptyPolicy, "emptyPolicy"),
            (.invalidKey, "invalidKey"), (.duplicateKey, "duplicateKey"), (.invalidCondition, "invalidCondition"),
            (.unsupportedOperator, "unsupportedOperator"), (.tooManyKeys, "tooManyKeys"),
            (.tooComplex, "tooComplex"), (.tooLarge, "tooLarge"),
        ]
        for (code, name) in codes {
            #expect(code.description == name)
        }
        #expect(Set(codes.map(\.0)).count == codes.count)
        #expect(FilterPolicyError.Code.invalidJSON != .invalidCondition)
    }

    @Test("an error names the key and the fault")
    func errorMessage() {
        let error = #expect(throws: FilterPolicyError.self) {
            try FilterPolicy(json: #"{"size": [{"numeric": [">"]}]}"#)
        }
        #expect(error?.key == "size")
        #expect(error?.message == "key 'size': numeric operator '>' must be followed by a number")
        #expect(
            error?.description
                == "FilterPolicyError.invalidCondition: key 'size': numeric operator '>' must be followed by a number"
        )
    }

    @Test("limits are the SNS ones")
    func limits() {
        #expect(FilterPolicy.maximumKeysPerLevel == 5)
        #expect(FilterPolicy.maximumCombinations == 150)
        #expect(FilterPolicy.maximumSize == 256 * 1024)
        #expect(FilterPolicy.minimumOrAlternatives == 2)
        #expect(FilterPolicy.maximumNestingDepth >= 8)
    }
}

// MARK: - MessageAttributeValue Codable

@Suite("MessageAttributeValue Codable")
struct MessageAttributeValueCodableTests {
    private func encode(_ value: MessageAttributeValue) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    private func decode(_ json: String) throws -> MessageAttributeValue {
        try JSONDecoder().decode(MessageAttributeValue.self, from: Data(json.utf8))
    }

    @Test(
        "encodes to the stored form",
        arguments: [
            (MessageAttributeValue.string("abc"), #"{"type":"String","value":"abc"}"#),
            (.string(""), #"{"type":"String","value":""}"#),
            (.number(12.5), #"{"type":"Number","value":"12.5"}"#),
            (.number(5), #"{"type":"Number","value":"5"}"#),
            (.number(-3), #"{"type":"Number","value":"-3"}"#),
            (.number(-0.0), #"{"type":"Number","value":"0"}"#),
            (.number(0.1), #"{"type":"Number","value":"0.1"}"#),
            (.number(1e20), #"{"type":"Number","value":"1e+20"}"#),
            (.stringArray(["a", "b"]), #"{"type":"String.Array","value":["a","b"]}"#),
            (.stringArray([]), #"{"type":"String.Array","value":[]}"#),
        ]
    )
    func encodes(_ value: MessageAttributeValue, _ expected: String) throws {
        #expect(try encode(value) == expected)
    }

    @Test(
        "round-trips",
        arguments: [
            MessageAttributeValue.string("abc"), .string(""), .string("é😀\"\\\n"),
            .number(0), .number(12.5), .number(-123.456), .number(1e-7), .number(1e300), .number(-1e-300),
            .number(0.1 + 0.2), .number(9_007_199_254_740_992), .number(1_700_000_000_123.5),
            .number(Double.greatestFiniteMagnitude), .number(Double.leastNonzeroMagnitude),
            .stringArray(["a", "b"]), .stringArray([]), .stringArray(["", "x y", "ü"]),
        ]
    )
    func roundTrips(_ value: MessageAttributeValue) throws {
        let decoded = try decode(try encode(value))
        #expect(decoded == value)
        #expect(decoded.dataType == value.dataType)
    }

    @Test("round-trips a MessageAttributes dictionary")
    func roundTripsDictionary() throws {
        let encoded = try JSONEncoder().encode(FilterPolicyFixtures.snsDocumentationMessage)
        let decoded = try JSONDecoder().decode(MessageAttributes.self, from: encoded)
        #expect(decoded == FilterPolicyFixtures.snsDocumentationMessage)
        #expect(try FilterPolicy(json: FilterPolicyFixtures.snsDocumentationPolicy).matches(decoded))
    }

    @Test(
        "decodes Number text forms",
        arguments: [
            ("1e3", 1000.0), ("-7", -7), ("+5", 5), (".5", 0.5), ("+.5", 0.5), ("5.", 5), ("0012", 12),
            ("3.015e2", 301.5), ("1E-2", 0.01), ("-0", -0.0), ("1e+20", 1e20),
        ]
    )
    func decodesNumberForms(_ text: String, _ expected: Double) throws {
        #expect(try decode(#"{"type":"Number","value":"\#(text)"}"#) == .number(expected))
        #expect(MessageAttributeValue.number(parsing: text) == .number(expected))
    }

    @Test(
        "rejects non-numeric Number values",
        arguments: ["abc", "", " 5", "5 ", "NaN", "nan", "inf", "-Infinity", "0x10", "1e999", "1e", ".", "-", "1.2.3", "5e+", "1_000"]
    )
    func rejectsBadNumbers(_ text: String) {
        #expect(throws: DecodingError.self) {
            try decode(#"{"type":"Number","value":"\#(text)"}"#)
        }
        #expect(MessageAttributeValue.number(parsing: text) == nil)
    }

    @Test(
        "rejects malformed stored forms",
        arguments: [
            #"{"type":"Binary","value":"AAEC"}"#,
            #"{"type":"string","value":"abc"}"#,
            #"{"value":"abc"}"#,
            #"{"type":"String"}"#,
            #"{"type":"String","value":5}"#,
            #"{"type":"String","value":null}"#,
            #"{"type":"Number","value":12.5}"#,
            #"{"type":"Number","value":true}"#,
            #"{"type":"String.Array","value":"[\"a\"]"}"#,
            #"{"type":"String.Array","value":["a",1]}"#,
            #"{"type":"String.Array","value":[null]}"#,
            #"{"type":5,"value":"abc"}"#,
            #"["String","abc"]"#,
            #""abc""#,
        ]
    )
    func rejectsMalformed(_ json: String) {
        #expect(throws: DecodingError.self) {
            try decode(json)
        }
    }

    @Test("an unknown type is reported by name")
    func unknownTypeMessage() {
        let error = #expect(throws: DecodingError.self) {
            try decode(#"{"type":"Binary","value":"AAEC"}"#)
        }
        guard case .dataCorrupted(let context)? = error else {
            Issue.record("expected dataCorrupted, got \(String(describing: error))")
            return
        }
        #expect(context.debugDescription.contains("'Binary'"))
    }

    @Test("refuses to encode a non-finite Number", arguments: [Double.nan, .infinity, -.infinity])
    func refusesNonFinite(_ number: Double) {
        #expect(throws: EncodingError.self) {
            try encode(.number(number))
        }
    }

    @Test("data types are the SNS names")
    func dataTypes() {
        #expect(MessageAttributeValue.string("x").dataType == "String")
        #expect(MessageAttributeValue.number(1).dataType == "Number")
        #expect(MessageAttributeValue.stringArray([]).dataType == "String.Array")
    }
}
