{
  description = "proctor: keeps an AI coding agent working until a machine-checkable exam passes, every step in a fresh container";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
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
        default = self.packages.${pkgs.system}.proctor;
      });
    };
}
