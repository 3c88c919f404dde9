"""The drift table (issue 13 §2): for every verify check of every step, how a container host is
made to drift from exactly that property, or why that cannot be a container drift case and where
the property is proved instead.

Plain data, keyed "step.verify_function". An entry holds either
  "break":  a shell command run as root on the converged container host (tests/reliability/
            test_drift.py): afterwards verify fails that check, `--plan --detailed-exitcode`
            exits 3 naming the step, `provision <step>` repairs it and verify is green again;
            "slow_verify": True skips the "verify fails after the break" assertion where that
            check waits a minute for the property before it fails (the rest still runs);
            "repaired_by": the step that owns the broken file, when it is not the check's own;
            "planned": the steps the plan names, when more than that one (default [step]);
or
  "reason": why there is no container drift case, naming where the property IS proved
            ("KNOWN GAP: ..." where check misses a drift that verify sees).
tests/unit/test_drift_registry.py fails when a verify check has no entry here.
"""

from __future__ import annotations

SUDOERS = "/etc/sudoers.d/provision-alice"
COMPONENTS = "/etc/apt/sources.list.d/provision-components.sources"
TENSORBOARD_UNIT = "/etc/systemd/system/provision-tensorboard.service"
IN_CONTAINER = "skipped by verify on a container (systemd-detect-virt --container): "
ENV = "/opt/provision/envs/dl"
SITE = f"{ENV}/lib/python3.11/site-packages"
GPU_ONLY = "GPU only (skipped by verify without an NVIDIA GPU): "
JUPYTER_DRIFT = "broken by hand, `--plan --detailed-exitcode` exits 3 naming jupyter, repaired: "

DRIFT: dict[str, dict] = {
    # --- base ---------------------------------------------------------------------------------
    "base.verify_essentials": {"break": "apt-get remove -y -q jq"},
    "base.verify_dpkg": {
        # What a dpkg run cut off between unpack and configure leaves (dpkg --audit lists it).
        "break": "sed -i '/^Package: jq$/,/^$/ s/^Status: install ok installed/"
        "Status: install ok half-configured/' /var/lib/dpkg/status",
    },
    "base.verify_apt_sources": {
        # Our components file (owned by the driver and cuda steps) given a second entry for the
        # same URI and suite with another Signed-By: apt refuses every source ("Conflicting
        # values set for option Signed-By"), as with an older provision's .gpg file beside
        # Debian 13's .pgp (that case: tests/container/test_trixie_on_container.py). base plans
        # to move the file aside and cuda its rewrite (it reads apt without the file; the
        # driver step, installed already, leaves sources alone); cuda's rewrite alone repairs.
        "break": f"f={COMPONENTS}; printf '\\nTypes: deb\\n%s\\n%s\\nComponents: contrib\\n"
        "Signed-By: /usr/share/keyrings/debian-archive-removed-keys.gpg\\n' "
        "\"$(grep -m1 '^URIs:' $f)\" \"$(grep -m1 '^Suites:' $f)\" >> $f",
        "planned": ["base", "cuda"],
        "repaired_by": "cuda",
    },
    "base.verify_headers": {
        "reason": IN_CONTAINER + "the kernel is the host's; converged and verified on a real "
        "kernel in tests/vm/test_base_on_vm.py::test_all_on_vm_applies_converges_and_verifies",
    },
    "base.verify_time_sync": {
        "reason": IN_CONTAINER + "the host's clock is used; converged and verified in "
        "tests/vm/test_base_on_vm.py::test_all_on_vm_applies_converges_and_verifies",
    },
    "base.verify_unattended": {"break": "rm /etc/apt/apt.conf.d/51provision-unattended-upgrades"},
    "base.verify_mirror": {
        "reason": "skipped by verify without base.apt_mirror, and no apt mirror can be reached "
        "from a test host (only loopback); the sources rewrite is table-tested in "
        "tests/unit/test_base.py",
    },
    "base.verify_ca_certificates": {
        # The certificate files stay right; the bundle is rebuilt while they are away.
        "break": "mkdir -p /root/ca && mv /usr/local/share/ca-certificates/provision-*.crt /root/ca/"
        " && update-ca-certificates --fresh >/dev/null 2>&1"
        " && mv /root/ca/* /usr/local/share/ca-certificates/",
    },
    "base.verify_lab_cache": {
        "reason": "skipped by verify without base.apt_proxy, and the drift host has no proxy: "
        "the drop-in is broken on a host behind a stand-in proxy, planned and repaired in "
        "tests/container/test_labcache_on_container.py::test_a_broken_drop_in_is_planned_and_repaired",
    },
    # --- users --------------------------------------------------------------------------------
    "users.verify_accounts": {"break": "gpasswd -d alice video"},
    "users.verify_keys": {"break": "chmod 0644 /home/alice/.ssh/authorized_keys"},
    "users.verify_sudo": {"break": f"echo 'alice ALL=(ALL) ALL' > {SUDOERS}"},
    "users.verify_sudoers_files": {"break": f"chmod 0640 {SUDOERS}"},
    # --- ssh ----------------------------------------------------------------------------------
    "ssh.verify_hardened": {
        # A drop-in read before provision's 00-provision.conf wins (sshd keeps the first value).
        "break": "printf 'X11Forwarding yes\\n' > /etc/ssh/sshd_config.d/0-drift.conf"
        " && systemctl reload ssh",
    },
    "ssh.verify_listening": {
        "reason": "cannot drift without cutting the SSH connection the repair comes through; a "
        "changed port is converged and confirmed in tests/container/test_ssh_on_container.py::"
        "test_ssh_port_change_is_confirmed_on_the_new_port",
    },
    "ssh.verify_exposure": {
        "reason": "KNOWN GAP: check does not see a listener beyond loopback that verify fails "
        "(another program's: provision cannot converge it, so check should report it as a "
        "manual item); the ss parsing is tested in tests/unit/test_ssh.py (issue 13 §2)",
    },
    "ssh.verify_firewall": {
        "reason": "a container shares its host's network namespace: ufw there would change the "
        "CI machine's firewall; converged and verified in "
        "tests/vm/test_base_on_vm.py::test_all_on_vm_applies_converges_and_verifies",
    },
    # --- network ------------------------------------------------------------------------------
    "network.verify_address": {
        "reason": "a container's NICs are its host's (skipped by verify without "
        "network.interface); converged and verified in "
        "tests/vm/test_network_on_vm.py::test_static_address_works_and_survives_a_reboot",
    },
    # --- autostart ----------------------------------------------------------------------------
    "autostart.verify_never_sleeps": {"break": "systemctl unmask -q suspend.target"},
    "autostart.verify_boot_target": {"break": "systemctl set-default -q graphical.target"},
    "autostart.verify_wake_on_lan": {
        "reason": "a container's NICs are its host's: autostart refuses wake-on-LAN there "
        "(tests/container/test_autostart_on_container.py::"
        "test_autostart_refuses_wake_on_lan_in_a_container); the ethtool plan is table-tested "
        "in tests/unit/test_autostart.py::test_autostart_wake_on_lan_on_a_real_box_prints_the_mac",
    },
    "autostart.verify_power_on_after_power_loss": {
        "reason": "manual item: firmware (BIOS/UEFI 'Restore on AC Power Loss'); verify reports "
        "it as manual. KNOWN GAP: check does not report it (a plan has no manual items) "
        "(issue 13 §2)",
    },
    # --- driver -------------------------------------------------------------------------------
    "driver.verify_nouveau_off": {"break": "rm /etc/modprobe.d/provision-blacklist-nouveau.conf"},
    "driver.verify_packages_held": {"break": "apt-mark unhold -qq $(apt-mark showhold)"},
    "driver.verify_unattended_skips_driver": {
        # The blocklist is base's file (driver only checks it): base is the step that repairs.
        "break": "rm /etc/apt/apt.conf.d/51provision-unattended-upgrades",
        "repaired_by": "base",
    },
    "driver.verify_dkms_built": {
        "reason": IN_CONTAINER + "the kernel and its modules belong to the host; built and "
        "verified on a real kernel in tests/vm/test_driver_on_vm.py::"
        "test_full_driver_install_builds_the_dkms_module_for_the_vm_kernel",
    },
    "driver.verify_module_loaded": {
        "reason": GPU_ONLY + "tests/gpu/test_on_gpu.py::"
        "test_driver_module_loaded_and_matches_nvidia_smi",
    },
    "driver.verify_persistenced": {
        # Issue 13 §2: the packages' own unit, enabled and failed on a box without a GPU.
        "break": "systemctl enable -q nvidia-persistenced.service;"
        " systemctl start nvidia-persistenced.service || true",
    },
    "driver.verify_fabricmanager": {
        "reason": "NVSwitch only (skipped by verify without an NVSwitch) and no tier has one: the "
        "plan is table-tested in tests/unit/test_driver.py::"
        "test_nvswitch_box_gets_the_fabric_manager_of_the_branch",
    },
    # --- cuda ---------------------------------------------------------------------------------
    "cuda.verify_repository": {"break": "rm /etc/apt/sources.list.d/cuda-debian12-x86_64.list"},
    "cuda.verify_keyring": {"break": ": > /usr/share/keyrings/cuda-archive-keyring.gpg"},
    "cuda.verify_no_apt_key": {
        # The FIXTURE key's user id says "not NVIDIA": it counts as an NVIDIA key by its uid.
        "break": "cp /usr/share/keyrings/cuda-archive-keyring.gpg /etc/apt/trusted.gpg",
    },
    "cuda.verify_pin": {"break": "rm /etc/apt/preferences.d/cuda-repository-pin-600"},
    "cuda.verify_nvcc": {
        "reason": "KNOWN GAP: check does not see the toolkit's nvcc missing while its package is "
        "installed (`rm /usr/local/cuda-12.8/bin/nvcc`: plan empty, verify fails); it would "
        "need a reinstall of the owning package (issue 13 §2)",
    },
    "cuda.verify_login_path": {"break": "rm /etc/profile.d/cuda.sh"},
    # --- containers ---------------------------------------------------------------------------
    # Docker needs a kernel of its own (cgroups, overlayfs, netns): no container drift case;
    # each check is broken and repaired on the VM instead.
    "containers.verify_engine": {
        "reason": "needs a kernel (Docker does not run in the test containers): docker.service "
        "stopped and disabled, planned and repaired in "
        "tests/vm/test_containers_on_vm.py::test_drift_is_planned_and_repaired",
    },
    "containers.verify_container_runs": {
        "reason": "needs a kernel: the check image removed (docker rmi), planned and rebuilt in "
        "tests/vm/test_containers_on_vm.py::test_drift_is_planned_and_repaired",
    },
    "containers.verify_daemon_json": {
        "reason": "needs a kernel: a key of ours removed from daemon.json (a key of the user's "
        "added beside it), planned and repaired with the user's key kept in "
        "tests/vm/test_containers_on_vm.py::test_drift_is_planned_and_repaired",
    },
    "containers.verify_docker_users": {
        "reason": "needs a kernel: the account taken out of the docker group (gpasswd -d), "
        "planned and repaired in "
        "tests/vm/test_containers_on_vm.py::test_drift_is_planned_and_repaired",
    },
    "containers.verify_rootless": {
        "reason": "needs a kernel (user namespaces of its own): the account's image removed "
        "and its lingering turned off, planned and repaired in "
        "tests/vm/test_podman_on_vm.py::test_rootless_drift_is_planned_and_repaired",
    },
    "containers.verify_toolkit": {
        "reason": "needs a kernel: runtimes.nvidia taken out of daemon.json and the udev rule "
        "removed, planned and repaired (against the FIXTURE toolkit repository) in "
        "tests/vm/test_containers_on_vm.py::test_the_toolkit_from_a_fixture_repository",
    },
    "containers.verify_gpu_in_container": {
        "reason": GPU_ONLY + "a container asks for the GPUs (CDI or the nvidia runtime) and "
        "runs nvidia-smi -L: tests/gpu/run-on-gpu.sh",
    },
    # --- cluster ------------------------------------------------------------------------------
    # A cluster needs three boxes on a LAN, not the one converged host: broken and repaired in
    # the cluster's own container test, on its controller and a node.
    "cluster.verify_munge": {
        "reason": "a cluster of three: a node's munge key replaced by another, planned and "
        "repaired (and the node idle again) in "
        "tests/container/test_cluster_on_container.py::test_drift_is_planned_and_repaired",
    },
    "cluster.verify_node_idle": {
        "reason": "a cluster of three: a node's slurmd stopped and disabled, planned and "
        "repaired in tests/container/test_cluster_on_container.py::"
        "test_drift_is_planned_and_repaired",
    },
    "cluster.verify_srun_everywhere": {
        "reason": "a cluster of three: slurm.conf edited on one node (srun then fails), planned "
        "and repaired in tests/container/test_cluster_on_container.py::"
        "test_drift_is_planned_and_repaired",
    },
    "cluster.verify_job_confined": {
        "reason": "needs a kernel of its own (the containers run with cluster.cgroups off): "
        "two VMs, ConstrainRAMSpace turned off in one node's cgroup.conf and slurmd restarted, "
        "planned and repaired in "
        "tests/vm/test_cluster_nfs_on_vm.py::test_drift_is_planned_and_repaired",
    },
    # Shared homes need an NFS kernel server: two VMs on a LAN, by hand (-m slow).
    "cluster.verify_share_exported": {
        "reason": "two VMs: the exports file opened to everyone without root squashing, planned "
        "and repaired in tests/vm/test_cluster_nfs_on_vm.py::test_drift_is_planned_and_repaired",
    },
    "cluster.verify_share_mounted": {
        "reason": "two VMs: the automount disabled and stopped on the other box, planned and "
        "repaired in tests/vm/test_cluster_nfs_on_vm.py::test_drift_is_planned_and_repaired",
    },
    "cluster.verify_shared_home_job": {
        "reason": "two VMs: the proof directory given to root (the squashed job cannot write), "
        "planned and repaired in "
        "tests/vm/test_cluster_nfs_on_vm.py::test_drift_is_planned_and_repaired",
    },
    "cluster.verify_one_gpu_job": {
        "reason": GPU_ONLY + "a one-GPU job sees one GPU: tests/gpu/run-on-gpu.sh",
    },
    # --- conda --------------------------------------------------------------------------------
    "conda.verify_conda_runs": {
        "reason": "by design not converged: check refuses a prefix that holds no working conda "
        "(exit 1, 'move it away'), it never overwrites a directory it cannot read as conda: "
        "tests/unit/test_conda.py::test_existing_prefix_without_conda_is_not_overwritten",
    },
    "conda.verify_prefix_shared": {"break": "chmod g-w /opt/conda"},
    "conda.verify_condarc": {"break": "rm /opt/conda/.condarc"},
    "conda.verify_login_shell_function": {"break": "rm /etc/profile.d/provision-conda.sh"},
    # --- pytorch ------------------------------------------------------------------------------
    "pytorch.verify_import": {"break": f"{ENV}/bin/python -m pip uninstall -y -q torch"},
    "pytorch.verify_cuda_tag": {
        # What `pip install torch` from PyPI leaves: an untagged version, built with CUDA.
        "break": f"sed -i 's/^Version: 2.13.0+cpu$/Version: 2.13.0/' "
        f"{SITE}/torch-2.13.0+cpu.dist-info/METADATA && sed -i "
        f"\"s/^cuda: Optional\\[str\\] = None/cuda: Optional[str] = '12.8'/\" {SITE}/torch/version.py",
    },
    "pytorch.verify_cuda_available": {
        "reason": GPU_ONLY + "tests/gpu/test_on_gpu.py::test_pytorch_cuda_available",
    },
    "pytorch.verify_gpu_matmul": {
        "reason": GPU_ONLY + "tests/gpu/test_on_gpu.py::test_pytorch_matmul_on_the_gpu",
    },
    # --- tensorboard --------------------------------------------------------------------------
    "tensorboard.verify_running": {
        "break": "systemctl stop provision-tensorboard.service",
        "slow_verify": True,  # verify_http, in the same verify run, waits a minute for it
    },
    "tensorboard.verify_http": {
        # Still running and enabled, but on a port the kernel picks: nothing answers on the set one.
        "break": f"sed -i 's/--port [0-9]*/--port 0/' {TENSORBOARD_UNIT}"
        " && systemctl daemon-reload && systemctl restart provision-tensorboard.service",
        "slow_verify": True,
    },
    "tensorboard.verify_local_only": {
        "break": f"sed -i 's/--host 127.0.0.1/--host 0.0.0.0/' {TENSORBOARD_UNIT}"
        " && systemctl daemon-reload && systemctl restart provision-tensorboard.service"
        " && sleep 5",
    },
    # --- jupyter (issue 20; off by default, so not on the drift host: broken, planned and
    # repaired on its own container, with the PyTorch kernel, in the module cited) ---------------
    "jupyter.verify_running": {
        "reason": JUPYTER_DRIFT + "the unit disabled, in "
        "tests/container/test_jupyter_on_container.py::test_drift_of_the_service_is_planned_and_repaired",
    },
    "jupyter.verify_local_only": {
        "reason": JUPYTER_DRIFT + "the unit edited to --ip=0.0.0.0, in "
        "tests/container/test_jupyter_on_container.py::test_drift_of_the_service_is_planned_and_repaired",
    },
    "jupyter.verify_login": {
        "reason": JUPYTER_DRIFT + "the unit's JUPYTER_TOKEN_FILE replaced (a token nobody has), "
        "in tests/container/test_jupyter_on_container.py::test_drift_of_the_files_is_planned_and_repaired",
    },
    "jupyter.verify_kernels": {
        "reason": JUPYTER_DRIFT + "the PyTorch kernelspec removed, in "
        "tests/container/test_jupyter_on_container.py::test_drift_of_the_files_is_planned_and_repaired",
    },
    "jupyter.verify_token_private": {
        "reason": JUPYTER_DRIFT + "the token file made 0644, in "
        "tests/container/test_jupyter_on_container.py::test_drift_of_the_files_is_planned_and_repaired",
    },
    # hub mode: the same container switched to jupyter.mode=hub, two accounts of the users step
    "jupyter.verify_hub_running": {
        "reason": JUPYTER_DRIFT + "the hub disabled and stopped, in "
        "tests/container/test_jupyter_on_container.py::test_hub_drift_is_planned_and_repaired",
    },
    "jupyter.verify_hub_local_only": {
        "reason": JUPYTER_DRIFT + "its config edited to bind 0.0.0.0, in "
        "tests/container/test_jupyter_on_container.py::test_hub_drift_is_planned_and_repaired",
    },
    "jupyter.verify_hub_login": {
        "reason": JUPYTER_DRIFT + "the config's allow-list emptied (nobody may log in), in "
        "tests/container/test_jupyter_on_container.py::test_hub_drift_is_planned_and_repaired",
    },
    "jupyter.verify_hub_limits": {
        "reason": "KNOWN GAP: check cannot restart a user's running server (it would end their "
        "work): a server started under other limits fails verify with the fix (restart it) and "
        "the plan changes only the config, in "
        "tests/container/test_jupyter_on_container.py::test_hub_limits_of_a_running_server_are_checked",
    },
    "jupyter.verify_hub_kernels": {
        "reason": JUPYTER_DRIFT + "the PyTorch kernelspec removed, in "
        "tests/container/test_jupyter_on_container.py::test_hub_drift_is_planned_and_repaired",
    },
    "jupyter.verify_hub_secret_private": {
        "reason": JUPYTER_DRIFT + "the hub's state directory made 0755, in "
        "tests/container/test_jupyter_on_container.py::test_hub_drift_is_planned_and_repaired",
    },
    # --- expose -------------------------------------------------------------------------------
    "expose.verify_tunnel_key": {
        "reason": "needs a relay host beside the box (verify_tunnel_up fails without one); the "
        "loose key mode is planned in tests/unit/test_expose.py::"
        "test_expose_key_with_loose_mode_is_fixed, the tunnel converged in "
        "tests/container/test_expose_on_container.py::test_tunnel_reaches_the_box_through_the_relay",
    },
    "expose.verify_tunnel_up": {
        "reason": "needs a relay host beside the box; a killed tunnel comes back in "
        "tests/container/test_expose_on_container.py::test_tunnel_comes_back_after_its_ssh_is_killed",
    },
    "expose.verify_wireguard": {
        "reason": "refused in a container (tests/unit/test_expose.py::"
        "test_expose_wireguard_is_refused_in_a_container); converged and verified in "
        "tests/vm/test_wireguard_on_vm.py::"
        "test_wireguard_interface_comes_up_and_handshakes_with_a_peer",
    },
}
