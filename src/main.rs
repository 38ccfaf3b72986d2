use clap::Parser;
use food_api::config::Config;
use food_api::startup::Application;
use food_api::telemetry::init_subscriber;

fn main() {
    // Before any thread exists: every thread inherits the first one's CPUs (undo_openmp_pin).
    let unpinned = food_api::model::undo_openmp_pin();
    actix_web::rt::System::new().block_on(serve(unpinned));
}

async fn serve(unpinned: Option<String>) {
    // `food-api validate <folder>`: the child process that checks uploaded weights (src/validate.rs).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "validate") {
        food_api::validate::run(args.get(2).map(|a| a.as_os_str()));
    }
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
