import S3CopyProcessor

/// Entry point of `exchanger-s3-copy`; everything lives in the S3CopyProcessor library.
@main
enum S3CopyMain {
    static func main() async {
        await S3CopyCommand.main(nil)
    }
}
