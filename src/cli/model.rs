//! `attnscope model info | tokens | qkv | mass | quality | next` (docs/contract.md section 6): a real
//! model's attention under a pattern. Raw flags → a loaded model, the token ids and the pattern
//! at their count → `crate::analysis`.

use super::args::OptionalPatternArgs;
use super::{parse_count, print_report, CliError};
use crate::analysis::{self, Silent};
use crate::export::{npy_header, AtomicFile};
use crate::model::{self, Model, ModelError, Tokens};
use crate::pattern::{Pattern, PatternKind, PatternParams};
use ndarray::Array2;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Arguments of `attnscope model`.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// What to show.
    #[command(subcommand)]
    pub command: ModelCommand,
}

/// The subcommands of `attnscope model`.
#[derive(Debug, clap::Subcommand)]
pub enum ModelCommand {
    /// Print the model's shape: arch, layers, heads, kv_heads, head_dim, causal, vocab, max_positions.
    Info(InfoArgs),
    /// Print the token ids the model runs on, with the text of each token.
    Tokens(TokensArgs),
    /// Write q.npy, k.npy, v.npy (float32, (n, head_dim)) of one head into a folder.
    Qkv(QkvArgs),
    /// Print the dense attention mass the pattern keeps, per layer and head.
    Mass(PatternRunArgs),
    /// Print loss and perplexity (decoder) or embedding cosine (encoder), dense vs pattern.
    Quality(QualityArgs),
    /// Print the most probable next tokens after a prompt, under the pattern (decoder).
    Next(NextArgs),
}

/// `--model PATH`.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelPath {
    /// A GGUF file (llama decoder), a folder with config.json, model.safetensors and
    /// tokenizer.json (BERT encoder), or a name found in $ATTNSCOPE_MODELS or models/
    /// (`smollm2`, `minilm`).
    #[arg(long, value_name = "PATH")]
    pub model: String,
}

/// `--text FILE | --prompt STRING [--max-tokens N]`.
#[derive(Debug, Clone, clap::Args)]
pub struct TextArgs {
    /// Read the text from this UTF-8 file.
    #[arg(long, value_name = "FILE", conflicts_with = "prompt")]
    pub text: Option<PathBuf>,
    /// The text itself.
    #[arg(long, value_name = "STRING")]
    pub prompt: Option<String>,
    /// Cut the text to this many tokens (special tokens included; at most the model's
    /// positions).
    #[arg(long, value_name = "N", default_value = "512", value_parser = parse_count)]
    pub max_tokens: usize,
}

/// Arguments of `attnscope model info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub model: ModelPath,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `attnscope model tokens`.
#[derive(Debug, clap::Args)]
pub struct TokensArgs {
    #[command(flatten)]
    pub model: ModelPath,
    #[command(flatten)]
    pub text: TextArgs,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `attnscope model qkv`.
#[derive(Debug, clap::Args)]
pub struct QkvArgs {
    #[command(flatten)]
    pub model: ModelPath,
    #[command(flatten)]
    pub text: TextArgs,
    /// Layer, 0-based.
    #[arg(long, value_name = "L", value_parser = parse_count)]
    pub layer: usize,
    /// Query head, 0-based.
    #[arg(long, value_name = "H", value_parser = parse_count)]
    pub head: usize,
    /// Folder to write q.npy, k.npy and v.npy into (created if missing).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: PathBuf,
}

/// Arguments of `attnscope model mass` and `model quality`.
#[derive(Debug, clap::Args)]
pub struct PatternRunArgs {
    #[command(flatten)]
    pub model: ModelPath,
    #[command(flatten)]
    pub text: TextArgs,
    /// The pattern (default dense), built at the token count.
    #[command(flatten)]
    pub pattern: OptionalPatternArgs,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `attnscope model quality`.
#[derive(Debug, clap::Args)]
pub struct QualityArgs {
    #[command(flatten)]
    pub run: PatternRunArgs,
    /// One pattern per layer instead of --pattern, repeated over the layers: GPT-3 alternates
    /// dense and banded layers, "dense,local(w=64)". Entries as in `reach --schedule`; what an
    /// entry leaves out comes from the PATTERN flags.
    #[arg(long, value_name = "LIST")]
    pub schedule: Option<String>,
}

/// Arguments of `attnscope model next`.
#[derive(Debug, clap::Args)]
pub struct NextArgs {
    #[command(flatten)]
    pub model: ModelPath,
    #[command(flatten)]
    pub text: TextArgs,
    /// How many candidates to print.
    #[arg(long, value_name = "K", default_value = "5", value_parser = parse_count)]
    pub top: usize,
    /// The pattern (default dense), built at the token count.
    #[command(flatten)]
    pub pattern: OptionalPatternArgs,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// A model error at the command line: a bad file or request is exit 2, the rest exit 1.
fn model_error(e: ModelError) -> CliError {
    match e {
        ModelError::Io { .. } | ModelError::Format { .. } | ModelError::Input(_) => {
            CliError::Usage(e.to_string())
        }
        ModelError::Cancelled | ModelError::Kernel(_) => CliError::Runtime(e.to_string()),
    }
}

/// The path `--model` names: an existing path, or a name (or alias) in the models folders.
fn resolve(name: &str) -> Result<PathBuf, CliError> {
    let given = Path::new(name);
    if given.exists() {
        return Ok(given.to_path_buf());
    }
    let alias = match name.to_ascii_lowercase().as_str() {
        "smollm2" | "smollm" | "smollm2-135m" => Some(model::SMOLLM2_FILE),
        "minilm" | "all-minilm" | "all-minilm-l6-v2" => Some(model::MINILM_DIR),
        _ => None,
    };
    let is_bare = given.components().count() == 1;
    if is_bare {
        if let Some(found) = model::find(alias.unwrap_or(name)) {
            return Ok(found);
        }
    }
    let dirs: Vec<String> = model::model_dirs()
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    Err(CliError::Usage(format!(
        "--model {name:?} not found: give a GGUF file, a BERT folder (config.json, model.safetensors, tokenizer.json) or a model name found in {} (scripts/get-models.sh fetches smollm2 and minilm)",
        dirs.join(", ")
    )))
}

/// Loads the model `--model` names.
fn load(m: &ModelPath) -> Result<Box<dyn Model>, CliError> {
    model::load(&resolve(&m.model)?).map_err(model_error)
}

/// The text of `--text FILE` or `--prompt`.
fn read_text(t: &TextArgs) -> Result<String, CliError> {
    let text = match (&t.text, &t.prompt) {
        (Some(path), _) => std::fs::read_to_string(path).map_err(|e| {
            let msg = format!("cannot read --text {}: {e}", path.display());
            match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidData => {
                    CliError::Usage(msg)
                }
                _ => CliError::Runtime(msg),
            }
        })?,
        (None, Some(p)) => p.clone(),
        (None, None) => {
            return Err(CliError::Usage(
                "no text: give --text FILE or --prompt STRING".into(),
            ))
        }
    };
    if text.trim().is_empty() {
        return Err(CliError::Usage(
            "the text is empty: give a --text FILE or --prompt STRING with at least one word"
                .into(),
        ));
    }
    if t.max_tokens == 0 {
        return Err(CliError::Usage(
            "--max-tokens 0 is out of range: expected an integer ≥ 1".into(),
        ));
    }
    Ok(text)
}

/// Loads the model and tokenizes the text.
fn load_with_tokens(m: &ModelPath, t: &TextArgs) -> Result<(Box<dyn Model>, Tokens), CliError> {
    let text = read_text(t)?;
    let model = load(m)?;
    let tokens = model.tokenize(&text, t.max_tokens).map_err(model_error)?;
    Ok((model, tokens))
}

/// The pattern of the flags at the token count, and its label as the model runs it (∩ causal
/// for a decoder).
fn pattern_at(
    flags: &OptionalPatternArgs,
    model: &dyn Model,
    n: usize,
) -> Result<(Pattern, String), CliError> {
    let (p, _block) = flags.build_at(n, &format!("the text, which has n = {n} tokens"))?;
    let label = analysis::for_model(&p, model.info())
        .map_err(model_error)?
        .label();
    Ok((p, label))
}

/// The `n`, `pattern`, `label` header of every pattern report.
#[derive(serde::Serialize)]
struct Header {
    n: usize,
    pattern: String,
    label: String,
}

/// Runs `attnscope model …`.
pub fn run(a: ModelArgs) -> Result<(), CliError> {
    match a.command {
        ModelCommand::Info(a) => info(a),
        ModelCommand::Tokens(a) => tokens(a),
        ModelCommand::Qkv(a) => qkv(a),
        ModelCommand::Mass(a) => mass(a),
        ModelCommand::Quality(a) => quality(a),
        ModelCommand::Next(a) => next(a),
    }
}

fn info(a: InfoArgs) -> Result<(), CliError> {
    let model = load(&a.model)?;
    let i = model.info();
    print_report(a.json, i, || {
        format!(
            "arch           {}\nlayers         {}\nheads          {}\nkv_heads       {}\nhead_dim       {}\ncausal         {}\nvocab          {}\nmax_positions  {}\nhidden         {}\n",
            match i.arch {
                model::Arch::Llama => "llama",
                model::Arch::Bert => "bert",
            },
            i.layers,
            i.heads,
            i.kv_heads,
            i.head_dim,
            i.causal,
            i.vocab,
            i.max_positions,
            i.hidden
        )
    })
}

fn tokens(a: TokensArgs) -> Result<(), CliError> {
    let (_model, t) = load_with_tokens(&a.model, &a.text)?;
    print_report(a.json, &t, || {
        let mut s = format!("{} tokens\n", t.ids.len());
        for (i, (id, tok)) in t.ids.iter().zip(&t.tokens).enumerate() {
            let _ = writeln!(s, "{i:>6}  {id:>7}  {tok:?}");
        }
        s
    })
}

/// Writes `a` into `file` as a float32 `.npy` array.
fn write_f32(file: AtomicFile, a: &Array2<f32>) -> Result<(), CliError> {
    file.commit(|w| {
        w.write_all(&npy_header("<f4", &[a.nrows(), a.ncols()]))?;
        for x in a.iter() {
            w.write_all(&x.to_le_bytes())?;
        }
        Ok(())
    })?;
    Ok(())
}

fn qkv(a: QkvArgs) -> Result<(), CliError> {
    let text = read_text(&a.text)?;
    let model = load(&a.model)?;
    analysis::check_head(model.info(), a.layer, a.head).map_err(model_error)?;
    let t = model
        .tokenize(&text, a.text.max_tokens)
        .map_err(model_error)?;
    // The outputs are opened before the work, so a folder that cannot be written fails first.
    std::fs::create_dir_all(&a.output).map_err(|e| {
        CliError::Runtime(format!(
            "cannot create the folder {}: {e}",
            a.output.display()
        ))
    })?;
    let files = ["q.npy", "k.npy", "v.npy"]
        .map(|name| AtomicFile::create(&a.output.join(name)))
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let qkv = analysis::head_qkv(model.as_ref(), &t.ids, a.layer, a.head, &Silent)
        .map_err(model_error)?;
    for (file, arr) in files.into_iter().zip([&qkv.q, &qkv.k, &qkv.v]) {
        write_f32(file, arr)?;
    }
    let (n, d) = qkv.q.dim();
    super::write_output(
        &mut std::io::stdout().lock(),
        &format!(
            "wrote q.npy, k.npy, v.npy ({n} × {d}, float32) of layer {} head {} to {}\n",
            a.layer,
            a.head,
            a.output.display()
        ),
    )
}

/// The JSON of `model mass`.
#[derive(serde::Serialize)]
struct MassReport {
    #[serde(flatten)]
    header: Header,
    layers: Vec<analysis::LayerMass>,
}

fn mass(a: PatternRunArgs) -> Result<(), CliError> {
    let (model, t) = load_with_tokens(&a.model, &a.text)?;
    let n = t.ids.len();
    let (p, label) = pattern_at(&a.pattern, model.as_ref(), n)?;
    let layers = analysis::mass_kept(model.as_ref(), &t.ids, &p, &Silent).map_err(model_error)?;
    let report = MassReport {
        header: Header {
            n,
            pattern: p.name(),
            label,
        },
        layers,
    };
    print_report(a.json, &report, || {
        let h = &report.header;
        let mut s = format!(
            "mass kept by {} at n = {} (mean over queries, %; worst query in brackets)\n",
            h.label, h.n
        );
        for l in &report.layers {
            let _ = write!(s, "layer {:>2} ", l.layer);
            for hm in &l.heads {
                let _ = write!(
                    s,
                    " {:>5.1} ({:>5.1})",
                    100.0 * hm.mass_kept,
                    100.0 * hm.worst_query
                );
            }
            s.push('\n');
        }
        s
    })
}

/// The JSON of `model quality`.
#[derive(serde::Serialize)]
struct QualityReport {
    #[serde(flatten)]
    header: Header,
    #[serde(flatten)]
    quality: analysis::Quality,
}

/// The layers' patterns of `model quality` at `n` tokens: `--pattern`'s one pattern, or one
/// per `--schedule` entry (over the shared PATTERN flags); with the names and the label as the
/// model runs them (∩ causal for a decoder).
fn layer_patterns(
    a: &QualityArgs,
    model: &dyn Model,
    n: usize,
) -> Result<(Vec<Pattern>, String, String), CliError> {
    let Some(list) = &a.schedule else {
        let (p, label) = pattern_at(&a.run.pattern, model, n)?;
        return Ok((vec![p.clone()], p.name(), label));
    };
    if let Some(text) = &a.run.pattern.pattern {
        return Err(CliError::Usage(format!(
            "--pattern {:?} cannot be used with --schedule {list:?}: the schedule gives every \
             layer's pattern; leave out --pattern",
            text.0
        )));
    }
    // Checks --n and --block as for one pattern; the schedule's entries replace the kind.
    pattern_at(&a.run.pattern, model, n)?;
    let base = PatternParams::new(PatternKind::Dense, n);
    let shared = a.run.pattern.params_over(&base);
    let usage = |e: crate::reach::ScheduleSpecError| CliError::Usage(e.to_string());
    let entries = crate::reach::parse_schedule(list).map_err(usage)?;
    let schedule = crate::reach::schedule_from(&entries, &shared).map_err(usage)?;
    let mut labels = Vec::new();
    for p in schedule.patterns() {
        labels.push(
            analysis::for_model(p, model.info())
                .map_err(model_error)?
                .label(),
        );
    }
    let label = if labels.len() == 1 {
        labels.remove(0)
    } else {
        format!("schedule({})", labels.join(" | "))
    };
    Ok((schedule.patterns().to_vec(), schedule.names(), label))
}

fn quality(a: QualityArgs) -> Result<(), CliError> {
    let (model, t) = load_with_tokens(&a.run.model, &a.run.text)?;
    let n = t.ids.len();
    let (layers, pattern, label) = layer_patterns(&a, model.as_ref(), n)?;
    let q = analysis::quality_schedule(model.as_ref(), &t.ids, &layers, &Silent)
        .map_err(model_error)?;
    let report = QualityReport {
        header: Header { n, pattern, label },
        quality: q,
    };
    print_report(a.run.json, &report, || {
        let h = &report.header;
        let q = &report.quality;
        let mut s = format!("{} at n = {}\n", h.label, h.n);
        if let (Some(ld), Some(lp), Some(pd), Some(pp)) =
            (q.loss_dense, q.loss_pattern, q.ppl_dense, q.ppl_pattern)
        {
            let _ = writeln!(s, "loss  dense {ld:.4}  pattern {lp:.4} (nats per token)");
            let _ = writeln!(s, "ppl   dense {pd:.3}  pattern {pp:.3}");
        }
        if let Some(c) = q.embedding_cosine {
            let _ = writeln!(s, "embedding cosine (dense vs pattern) {c:.6}");
        }
        s
    })
}

/// The JSON of `model next`.
#[derive(serde::Serialize)]
struct NextReport {
    #[serde(flatten)]
    header: Header,
    top: Vec<analysis::NextToken>,
}

fn next(a: NextArgs) -> Result<(), CliError> {
    if a.top == 0 {
        return Err(CliError::Usage(
            "--top 0 is out of range: expected an integer ≥ 1".into(),
        ));
    }
    let (model, t) = load_with_tokens(&a.model, &a.text)?;
    let n = t.ids.len();
    let (p, label) = pattern_at(&a.pattern, model.as_ref(), n)?;
    let top =
        analysis::next_tokens(model.as_ref(), &t.ids, &p, a.top, &Silent).map_err(model_error)?;
    let report = NextReport {
        header: Header {
            n,
            pattern: p.name(),
            label,
        },
        top,
    };
    print_report(a.json, &report, || {
        let mut s = format!(
            "next token after {} tokens under {}\n",
            report.header.n, report.header.label
        );
        for c in &report.top {
            let _ = writeln!(s, "{:>7.3}%  {:>6}  {:?}", 100.0 * c.prob, c.id, c.token);
        }
        s
    })
}
