# globalvm quickstart: an image uploaded to eu-west and a VM group of 2 in us-east.
# The control plane transfers the image to us-east (only the chunks it lacks) and starts
# the VMs there, with no further action.
#
#   export GLOBALVM_ENDPOINT=http://127.0.0.1:8080   # the control plane
#   export GLOBALVM_TOKEN=...                        # a project token
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
  description = "Local raw disk image to upload."
  type        = string
  default     = "disk.raw"
}

resource "globalvm_image" "web" {
  name          = "web"
  source        = var.image_file # editing the file plans an in-place update (a new version)
  format        = "raw"
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
