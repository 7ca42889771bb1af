// swift-tools-version: 6.0
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "DocumentExchanger",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "exchanger", targets: ["exchanger"]),
        .library(name: "Broker", targets: ["Broker"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // C libraries, through system-library targets (Debian: libpq-dev, libsqlite3-dev).
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"]), .brew(["libpq"])]
        ),
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"]), .brew(["sqlite"])]
        ),

        // Threads for blocking work (the per-connection executor, runBlocking) and small locks.
        .target(name: "ConcurrencySupport", swiftSettings: strict),
        // Shared database vocabulary: values, rows, errors, the connection pool.
        .target(name: "DatabaseSupport", dependencies: ["ConcurrencySupport"], swiftSettings: strict),
        // Thin, safe wrappers over libpq and SQLite; every connection runs on its own thread.
        .target(name: "PostgresClient", dependencies: ["CLibPQ", "ConcurrencySupport", "DatabaseSupport"], swiftSettings: strict),
        .target(name: "SQLiteClient", dependencies: ["CSQLite", "ConcurrencySupport", "DatabaseSupport"], swiftSettings: strict),
        // swift-log handler writing JSON lines.
        .target(
            name: "ExchangerLogging",
            dependencies: [.product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // posix_spawn-based child processes (benchmarks, tests, later the supervisor).
        .target(name: "ProcessSupport", dependencies: ["ConcurrencySupport"], swiftSettings: strict),

        // The broker: SQS/SNS semantics over PostgreSQL or SQLite.
        .target(
            name: "Broker",
            dependencies: [
                "ConcurrencySupport", "DatabaseSupport", "PostgresClient", "SQLiteClient",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),

        // The `exchanger` command line, as a library so it is testable; `exchanger` is its thin main.
        .target(
            name: "ExchangerCLI",
            dependencies: [
                "Broker", "DatabaseSupport", "ProcessSupport", "ExchangerLogging",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(name: "exchanger", dependencies: ["ExchangerCLI", "ProcessSupport"], swiftSettings: strict),

        .testTarget(
            name: "DatabaseTests",
            dependencies: ["ConcurrencySupport", "DatabaseSupport", "PostgresClient", "SQLiteClient", "ProcessSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "BrokerTests",
            dependencies: ["Broker", "ConcurrencySupport", "DatabaseSupport", "PostgresClient", "ProcessSupport", "exchanger"],
            swiftSettings: strict
        ),
    ],
    swiftLanguageModes: [.v6]
)
