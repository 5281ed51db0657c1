# globalvm quickstart: an image uploaded to eu-west and a VM group of 2 in us-east.
# The control plane transfers the image to us-east (only the chunks it lacks) and starts
# the VMs there, with no further action. The web group exposes port 80: its endpoint spreads
# connections over both instances, once a firewall rule lets the outside in. A `client` group
# in eu-west is handed the first web instance's private address (metadata_from) and fetches
# from it across the two regions.
#
#   eval "$(npx globalvm env)"   # GLOBALVM_ENDPOINT, GLOBALVM_TOKEN and TF_CLI_CONFIG_FILE
#   terraform init && terraform apply

terraform {
  required_providers {
    globalvm = {
      source  = "globalvm/globalvm"
      version = "0.1.0"
    }
  }
}

# endpoint and token default to GLOBALVM_ENDPOINT and GLOBALVM_TOKEN.
provider "globalvm" {}

variable "image_file" {
  description = "Local qcow2 disk image to upload; by default the small guest image npm run guest-image builds."
  type        = string
  default     = "../../../.globalvm/images/guest.qcow2"
}

resource "globalvm_image" "web" {
  name          = "web"
  source        = var.image_file # editing the file plans an in-place update (a new version)
  format        = "qcow2"
  origin_region = "eu-west"
  labels        = { app = "web" }
}

resource "globalvm_vm_group" "web" {
  name   = "web"
  image  = globalvm_image.web.id
  region = "us-east"
  size   = 2

  machine {
    vcpus     = 1
    memory_mb = 512
  }

  metadata = {
    ROLE = "web"
    # Run once at boot by the guest image: serve this instance's name over HTTP on port 80.
    startup-script = <<-EOT
      mkdir -p /www
      echo "hello from $(wget -q -O - --header 'Metadata-Flavor: Google' http://169.254.169.254/computeMetadata/v1/instance/name)" >/www/index.html
      httpd -h /www -p 80
    EOT
  }

  # One endpoint for the group's port 80, on us-east's host (under `globalvm up`: this
  # machine's loopback); see it in the output web_endpoint.
  expose {
    port = 80
  }

  timeouts {
    create = "15m"
  }
}

# Endpoints obey the network's firewall, where the outside is refused until a rule allows it.
data "globalvm_network" "default" {
  name = "default"
}

resource "globalvm_firewall_rule" "web_http" {
  network  = data.globalvm_network.default.id
  name     = "web-http"
  action   = "allow"
  protocol = "tcp"
  ports    = ["80"]
  # Anyone may reach port 80 of the network's instances, through the endpoint or not.
  source_cidr = "0.0.0.0/0"
}

# In the other region, on the same (default) network: WEB is web-0's private address, known
# only once it runs. The script fetches from it and publishes the answer as a guest attribute
# (see it with: npx globalvm vm-group show client).
resource "globalvm_vm_group" "client" {
  name   = "client"
  image  = globalvm_image.web.id
  region = "eu-west"
  size   = 1

  machine {
    vcpus     = 1
    memory_mb = 256
  }

  metadata = {
    startup-script = <<-EOT
      web="$(wget -q -O - --header 'Metadata-Flavor: Google' http://169.254.169.254/computeMetadata/v1/instance/attributes/WEB)"
      for i in $(seq 1 30); do
        answer="$(printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 "$web" 80 | tail -n 1)" && [ -n "$answer" ] && break
        sleep 1
      done
      guest-attribute web/answer "$${answer:-no answer from $web}"
    EOT
  }

  metadata_from = {
    WEB = { vm_group = globalvm_vm_group.web.id, instance = 0, attribute = "address" }
  }

  timeouts {
    create = "15m"
  }
}

data "globalvm_regions" "all" {}

output "regions" {
  value = data.globalvm_regions.all.status
}

output "web_endpoint" {
  description = "Where the web group's port 80 is reached: curl http://<this>/"
  value       = globalvm_vm_group.web.endpoints[0].address
}

output "addresses" {
  value = globalvm_vm_group.web.instances[*].address
}

output "client_address" {
  value = globalvm_vm_group.client.instances[0].address
}
