//! `proctor image`: turn a root filesystem into an image, list proctor's
//! images, prune unused ones. Never touches an image proctor did not make.

use std::path::PathBuf;

use super::CommandError;
use crate::cage::{default_name, Cage, DockerCage, ImageInfo, HOST_IMAGE};
use crate::git::GitRepo;
use crate::manifest;

/// Manage proctor's images: `import` a root filesystem (no registry
/// needed), `ls` them, `prune` the unused ones.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    Import(ImportArgs),
    Ls(LsArgs),
    Prune(PruneArgs),
}

/// Import a root filesystem as an image: a directory (tarred on the fly,
/// symlinks kept, device files skipped), a `.tar`, or a `.tar.gz`. Use it
/// with `image: NAME` in `proctor.yaml` or `.proctor/config.yaml`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The root filesystem: a directory, a tar archive, or a gzipped one.
    pub source: PathBuf,
    /// The image's name (`name` or `name:tag`); defaults to the source's
    /// file name without `.tar`/`.tar.gz`.
    #[arg(long)]
    pub name: Option<String>,
}

/// List proctor's images: the ones `proctor image import` made, and the
/// built-in host image.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// One JSON object per image, one a line.
    #[arg(long)]
    pub json: bool,
}

/// Remove proctor's images that no container uses. The built-in host image
/// of this version and every image proctor did not make are kept.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Only these images (`name` or `name:tag`); default: all of proctor's.
    pub names: Vec<String>,
}

pub async fn cmd_image(args: Args) -> Result<i32, CommandError> {
    let cage = connect().await?;
    match args.command {
        ImageCommand::Import(a) => import(&cage, a).await,
        ImageCommand::Ls(a) => ls(&cage, a).await,
        ImageCommand::Prune(a) => prune(&cage, a).await,
    }
}

/// The engine the repository around the working directory is configured
/// for, or the usual discovery outside a repository.
async fn connect() -> Result<DockerCage, CommandError> {
    let cwd = super::cwd()?;
    let engine = match GitRepo::open(&cwd) {
        Ok(git) => manifest::load_config(git.root())?.engine,
        Err(_) => None,
    };
    Ok(DockerCage::connect(engine.as_deref()).await?)
}

async fn import(cage: &DockerCage, args: ImportArgs) -> Result<i32, CommandError> {
    let name = match args.name {
        Some(name) => name,
        None => default_name(&args.source).ok_or_else(|| {
            CommandError::hint(
                format!("cannot make an image name from `{}`", args.source.display()),
                "name it with `--name NAME`",
            )
        })?,
    };
    if !args.source.exists() {
        return Err(CommandError::user(format!(
            "`{}` does not exist",
            args.source.display()
        )));
    }
    let report = cage.import_rootfs(&args.source, &name).await?;
    let what = if report.entries > 0 {
        format!(
            "{} entr{}, {}",
            report.entries,
            if report.entries == 1 { "y" } else { "ies" },
            human_bytes(report.bytes)
        )
    } else {
        human_bytes(report.bytes)
    };
    crate::views::out::say!(
        "imported `{}` ({}) from {}: {what}",
        report.name,
        short_id(&report.id),
        args.source.display()
    );
    if report.skipped_count > 0 {
        let more = report.skipped_count - report.skipped.len() as u64;
        crate::views::out::say!(
            "note: skipped {} device file{}, fifo{} or socket{} (the container gets its own /dev): {}{}",
            report.skipped_count,
            plural(report.skipped_count),
            plural(report.skipped_count),
            plural(report.skipped_count),
            report.skipped.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
    let short = report.name.strip_suffix(":latest").unwrap_or(&report.name);
    crate::views::out::say!("use it with `image: {short}` in proctor.yaml or .proctor/config.yaml");
    Ok(0)
}

async fn ls(cage: &DockerCage, args: LsArgs) -> Result<i32, CommandError> {
    let images = cage.proctor_images().await?;
    if args.json {
        for image in &images {
            let line = serde_json::to_string(image).map_err(|e| CommandError::Internal {
                message: e.to_string(),
            })?;
            crate::views::out::say!("{line}");
        }
        return Ok(0);
    }
    if images.is_empty() {
        crate::views::out::say!(
            "no proctor images on {}; import one with `proctor image import DIR|ROOTFS.tar.gz`",
            cage.describe()
        );
        return Ok(0);
    }
    let now = crate::state::now() as i64;
    let rows: Vec<[String; 4]> = images
        .iter()
        .map(|image| {
            [
                display_names(image),
                short_id(&image.id),
                human_bytes(image.size.max(0) as u64),
                ago(now - image.created),
            ]
        })
        .collect();
    let header = ["NAME", "ID", "SIZE", "CREATED"].map(String::from);
    let width = |i: usize| {
        rows.iter()
            .chain([&header])
            .map(|r| r[i].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    for row in [&header].into_iter().chain(&rows) {
        crate::views::out::say!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3]
        );
    }
    Ok(0)
}

async fn prune(cage: &DockerCage, args: PruneArgs) -> Result<i32, CommandError> {
    let report = cage.prune_images(&args.names).await?;
    for image in &report.removed {
        crate::views::out::say!("removed {} ({})", display_names(image), short_id(&image.id));
    }
    for image in &report.in_use {
        crate::views::out::say!(
            "kept {} ({}): a container uses it",
            display_names(image),
            short_id(&image.id)
        );
    }
    crate::views::out::say!(
        "removed {} image{}; kept {} in use{}",
        report.removed.len(),
        plural(report.removed.len() as u64),
        report.in_use.len(),
        if report.kept_builtin > 0 {
            " and the built-in host image"
        } else {
            ""
        }
    );
    if !report.not_found.is_empty() {
        return Err(CommandError::hint(
            format!(
                "not among proctor's images: {}",
                report
                    .not_found
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "`proctor image ls` lists them; proctor never removes an image it did not make",
        ));
    }
    Ok(0)
}

fn display_names(image: &ImageInfo) -> String {
    let mut names = if image.names.is_empty() {
        "<none>".to_string()
    } else {
        image.names.join(", ")
    };
    if image.builtin {
        names.push_str(&format!(" (built-in `{HOST_IMAGE}`)"));
    }
    names
}

fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn ago(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        0..=59 => "just now".into(),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_read_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1_982_263), "2.0 MB");
        assert_eq!(ago(5), "just now");
        assert_eq!(ago(7200), "2 h ago");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
    }
}
