#include "config/yaml_msgpack.h"

#include <yaml-cpp/yaml.h>

#include <msgpack.hpp>

namespace umi {
namespace {

using Packer = msgpack::packer<msgpack::sbuffer>;

void PackScalar(const YAML::Node& node, Packer& packer) {
  const std::string& text = node.Scalar();
  if (node.Tag() != "!") {  // "!" marks a quoted scalar
    bool flag;
    if (YAML::convert<bool>::decode(node, flag)) return void(packer.pack(flag));
    int64_t integer;
    if (YAML::convert<int64_t>::decode(node, integer)) return void(packer.pack(integer));
    double number;
    if (YAML::convert<double>::decode(node, number)) return void(packer.pack(number));
  }
  packer.pack(text);
}

void Pack(const YAML::Node& node, Packer& packer) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      PackScalar(node, packer);
      break;
    case YAML::NodeType::Sequence:
      packer.pack_array(static_cast<uint32_t>(node.size()));
      for (const auto& item : node) Pack(item, packer);
      break;
    case YAML::NodeType::Map:
      packer.pack_map(static_cast<uint32_t>(node.size()));
      for (const auto& entry : node) {
        packer.pack(entry.first.as<std::string>());
        Pack(entry.second, packer);
      }
      break;
    default:
      packer.pack_nil();
  }
}

}  // namespace

std::string YamlToMsgpack(const YAML::Node& node) {
  msgpack::sbuffer buffer;
  Packer packer(buffer);
  Pack(node, packer);
  return std::string(buffer.data(), buffer.size());
}

}  // namespace umi
