{
  description = "proctor: keeps an AI coding agent working until a machine-checkable exam passes, every step in a fresh container";

  # nixos-25.11: the first release whose Rust (1.91) builds proctor's
  # dependencies (they need 1.89), and which packages Codex and Claude Code.
  # The first `nix build` writes flake.lock, which pins the exact commit;
  # commit it to make later builds reproducible.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system:
        f (import nixpkgs {
          inherit system;
          # Claude Code is unfree; allow exactly it, nothing else.
          config.allowUnfreePredicate = pkg: nixpkgs.lib.getName pkg == "claude-code";
        }));
    in
    {
      packages = forAll (pkgs: {
        proctor = pkgs.rustPlatform.buildRustPackage {
          pname = "proctor";
          version = "0.1.0";
          src = ./.;
          cargoLock.lockFile = ./Cargo.lock;
          # The integration tests need a running container engine.
          doCheck = false;
        };
        default = self.packages.${pkgs.stdenv.hostPlatform.system}.proctor;

        # Agent and verifier images (see images/README.md):
        #   nix build .#codex-image && docker load < result
        codex-image = import ./images/nix/codex.nix { inherit pkgs; };
        claude-code-image = import ./images/nix/claude-code.nix { inherit pkgs; };
        verifier-image = import ./images/nix/verifier.nix { inherit pkgs; };
      });
    };
}
