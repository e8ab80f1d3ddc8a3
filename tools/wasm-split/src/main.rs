//! `switchboard-wasm-split IN.wasm PKG_DIR MAIN_OUT.wasm`
//!
//! Splits the linked browser WASM (built with `-Clink-args=--emit-relocs`) at its lazy split
//! points. Writes into `PKG_DIR` one module per split point and per piece of code they share,
//! the loader `__wasm_split.______________________.js` that the main module imports, and
//! `__wasm_split_manifest.json`, from which the server's `<HydrationScripts>` preloads the
//! modules a page needs. The main module goes to `MAIN_OUT.wasm`, for wasm-bindgen. Prints
//! the path of every module it wrote, one per line.

use std::path::PathBuf;

/// The names Leptos' `<HydrationScripts>` looks for (leptos `hydration/mod.rs`).
const LOADER: &str = "./__wasm_split.______________________.js";
const MANIFEST: &str = "__wasm_split_manifest.json";
/// The module wasm-bindgen writes, from which the loader takes `initSync`.
const MAIN_MODULE: &str = "./switchboard.js";

fn main() -> eyre::Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [input, pkg, main_out] = args.as_slice() else {
        eyre::bail!("usage: switchboard-wasm-split IN.wasm PKG_DIR MAIN_OUT.wasm");
    };
    let bytes = std::fs::read(input)?;
    let mut options = wasm_split_cli_support::Options::new(&bytes);
    options.output_dir = pkg;
    options.main_out_path = main_out;
    options.link_name = LOADER;
    options.main_module = MAIN_MODULE;
    let split = wasm_split_cli_support::transform(options)?;
    std::fs::write(pkg.join(MANIFEST), serde_json::to_string_pretty(&split.prefetch_map)?)?;
    for module in split.split_modules {
        println!("{}", module.display());
    }
    Ok(())
}
