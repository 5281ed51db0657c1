# globalvm quickstart: an image uploaded to eu-west and a VM group of 2 in us-east.
# The control plane transfers the image to us-east (only the chunks it lacks) and starts
# the VMs there, with no further action.
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

  metadata = { ROLE = "web" }

  timeouts {
    create = "15m"
  }
}

data "globalvm_regions" "all" {}

output "regions" {
  value = data.globalvm_regions.all.status
}

output "addresses" {
  value = globalvm_vm_group.web.instances[*].address
}
