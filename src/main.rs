use clap::Parser;
use food_api::config::Config;
use food_api::startup::Application;
use food_api::telemetry::init_subscriber;

fn main() {
    // Before any thread exists: every thread inherits the first one's CPUs (undo_openmp_pin).
    let unpinned = food_api::runtime::undo_openmp_pin();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // `food-api validate <folder>`: the child process that checks uploaded weights (src/validate.rs),
    // also before any thread: its sandbox holds for every thread it starts.
    if args.get(1).is_some_and(|a| a == "validate") {
        food_api::validate::run(args.get(2).map(|a| a.as_os_str()));
    }
    // `food-api torchscript-ops FILE...`: the operators of TorchScript files, one per line, for
    // scripts/torchscript_ops.py (src/runtime/torchscript_ops.txt).
    #[cfg(feature = "torch")]
    if args.get(1).is_some_and(|a| a == "torchscript-ops") {
        for file in &args[2..] {
            let ops = std::fs::read(file)
                .map_err(|e| e.to_string())
                .and_then(|b| food_api::runtime::torchscript_ops::operators(&b));
            match ops {
                Ok(ops) => ops.iter().for_each(|op| println!("{op}")),
                Err(e) => {
                    eprintln!("error: {}: {e}", std::path::Path::new(file).display());
                    std::process::exit(1);
                }
            }
        }
        std::process::exit(0);
    }
    actix_web::rt::System::new().block_on(serve(unpinned));
}

async fn serve(unpinned: Option<String>) {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // `food-api healthcheck`: the container image's HEALTHCHECK (src/healthcheck.rs).
    if args.get(1).is_some_and(|a| a == "healthcheck") {
        food_api::healthcheck::run();
    }
    // `food-api deploy <verb> --target <target>`: render and run the deployments (src/deploy/).
    if args.get(1).is_some_and(|a| a == "deploy") {
        std::process::exit(food_api::deploy::main(&args[1..]));
    }
    let config = Config::parse();
    init_subscriber(config.log_format);
    if let Some(message) = unpinned {
        tracing::warn!("{message}");
    }
    tracing::info!(?config, "starting");
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            // One line that names the cause and the fix; no backtrace.
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    };
    if let Err(e) = app.run_until_stopped().await {
        eprintln!("error: server stopped: {e}");
        std::process::exit(1);
    }
}
